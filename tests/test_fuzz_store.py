"""The corruption fuzzer (``tests/store_fuzz.py``): every kind of damage on store and text files.

The fuzzer runs in its own process (it starts a fork server); each case runs in a child of
that with a timeout. Every case must end in a fastquant error or the pristine answers (or
changed answers that ``verify()`` catches): no hang, no signal, no other exception, no byte
changed by a reader, none outside what an append committed. The judge itself is checked on
made-up probe results first. ``benchmarks/fuzz_store.py`` runs hundreds of random cases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fuzz_text
from store_fuzz import (
    ALL_EXTRA_KINDS,
    ALL_FILE_TARGETS,
    ALL_FOLDER_KINDS,
    BAD,
    CHUNKS,
    FILE_KINDS,
    ROWS,
    _append_may_change,
    every_target_and_kind,
    verdict,
)

PRISTINE = {"rows": 30, "int8": [[[1.0]], [[0]]]}


def _facts(**stages) -> dict:
    base = {"verify": {"value": 1}, "append": {"value": 42}, "opened": {"value": PRISTINE}}
    return {"stages": {**base, **stages}, "reader_wrote": [], "destroyed": []}


@pytest.mark.parametrize(
    "facts, exitcode, expected",
    [
        pytest.param(None, None, "hang", id="timeout"),
        pytest.param(None, -7, "signal", id="sigbus"),
        pytest.param(None, 1, "crash", id="no-verdict"),
        pytest.param(_facts(), 0, "pristine", id="pristine"),
        pytest.param(
            _facts(opened={"error": "StoreCorruptedError", "fastquant": True}), 0, "refused"
        ),
        pytest.param(
            _facts(opened={"error": "IsADirectoryError", "fastquant": False}), 0, "wrong error"
        ),
        pytest.param(_facts(opened={"value": {"rows": 29}}), 0, "silent change", id="silent"),
        pytest.param(
            _facts(opened={"value": {"rows": 29}}, verify={"error": "x", "fastquant": True}),
            0,
            "verify caught",
        ),
        pytest.param(
            {**_facts(), "destroyed": ["outside/decoy.bin"]}, 0, "destroyed", id="destroyed"
        ),
        pytest.param(
            _facts(**{"after append": {"error": "StoreCorruptedError", "fastquant": True}}),
            0,
            "append broke",
        ),
    ],
)
def test_the_judge(facts, exitcode, expected):
    assert verdict(facts, exitcode, PRISTINE)[0] == expected


def test_an_append_may_change_only_what_it_commits():
    chunk = ("file", b"\x01" * 14)  # chunk 4's bits: 2 committed rows of 3 bytes, then leftovers
    assert _append_may_change(
        "store/chunks/000004.bits", chunk, ("file", b"\x01" * 6 + b"\x02" * 9), True
    )
    assert not _append_may_change("store/chunks/000004.bits", chunk, ("file", b"\x01" * 5), True)
    assert not _append_may_change("store/chunks/000004.bits", ("link", "x"), None, True)
    assert _append_may_change(f"store/chunks/{CHUNKS:06d}.codes", None, ("file", b""), True)
    assert not _append_may_change(f"store/chunks/{CHUNKS:06d}.codes", None, ("file", b""), False)
    assert not _append_may_change("store/calibration.npy", ("file", b"a"), ("file", b"b"), True)
    assert not _append_may_change("outside/decoy.bin", ("file", b"a"), ("file", b""), True)
    assert _append_may_change("store/manifest.json", ("file", b"a"), ("file", b"b"), True)
    assert not _append_may_change("store/manifest.json", ("file", b"a"), ("file", b"b"), False)


def test_a_resume_may_change_only_the_records_it_writes_or_proves_leftovers():
    part = "store/records/000000000030-5-0a0b0c0d.arrow"
    assert fuzz_text.resume_may_change(part, None, ("file", b"new"), ROWS)
    assert fuzz_text.resume_may_change(part, ("file", b"left"), None, ROWS)
    assert not fuzz_text.resume_may_change(part, ("link", "x"), None, ROWS)
    committed = "store/records/000000000028-2-0a0b0c0d.arrow"
    assert not fuzz_text.resume_may_change(committed, ("file", b"a"), None, ROWS)
    assert not fuzz_text.resume_may_change(committed, ("file", b"a"), ("file", b"b"), ROWS)
    temp = "store/records/.000000000030-5-0a0b0c0d.arrow.tmp-42"
    assert fuzz_text.resume_may_change(temp, ("file", b"half"), None, ROWS)
    assert not fuzz_text.resume_may_change(temp, ("other", 0o040000), None, ROWS)
    old = ("file", b'{"model": "m", "dim": 8}')
    sealed = ("file", b'{"model": "m", "dim": 8, "format_version": 2, "json_crc32": 1}')
    edited = ("file", b'{"model": "n", "dim": 8, "format_version": 2, "json_crc32": 1}')
    assert fuzz_text.resume_may_change("store/records/index.json", old, sealed, ROWS)
    assert not fuzz_text.resume_may_change("store/records/index.json", old, edited, ROWS)
    assert fuzz_text.resume_may_change("store/text_index.json", None, ("file", b"{}"), ROWS)
    assert not fuzz_text.resume_may_change("store/text_index.json", ("file", b"{}"), None, ROWS)
    assert not fuzz_text.resume_may_change("store/records/notes.txt", ("file", b"a"), None, ROWS)


def test_the_ci_cases_put_every_kind_on_store_and_text_files_and_every_target_in_play():
    cases = every_target_and_kind(17)
    assert 90 <= len(cases) <= 110
    pairs = {(case.target, case.kind) for case in cases}
    for kind in FILE_KINDS:
        hit = {target for target, k in pairs if k == kind}
        assert hit & set(fuzz_text.FILE_TARGETS) and hit - set(fuzz_text.FILE_TARGETS), kind
    targets = {case.target for case in cases}
    middle = {target for target in ALL_FILE_TARGETS if target.startswith("middle")}
    assert targets == set(ALL_FILE_TARGETS) - middle | set(ALL_FOLDER_KINDS)
    for target, kinds in {**ALL_EXTRA_KINDS, **ALL_FOLDER_KINDS}.items():
        assert {(target, kind) for kind in kinds} <= pairs


def test_no_damage_hangs_kills_changes_answers_silently_or_destroys_bytes(tmp_path):
    out = tmp_path / "fuzz.json"
    fuzzer = Path(__file__).with_name("store_fuzz.py")
    run = subprocess.run(
        [sys.executable, str(fuzzer), "--seed", "17", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    bad = [
        {key: case[key] for key in ("target", "kind", "hot", "outcome", "description", "stages")}
        for case in result["bad"]
    ]
    assert bad == [], json.dumps(bad, indent=1) + "\n" + run.stdout
    outcomes = result["outcomes"]
    assert result["cases"] >= 90 and all(outcomes[name] == 0 for name in BAD)
    for good in ("refused", "pristine", "verify caught", "appended", "append refused"):
        assert outcomes[good] > 0, run.stdout
