"""The corruption fuzzer (``tests/store_fuzz.py``): every store file and kind of damage once.

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

from store_fuzz import BAD, CHUNKS, _append_may_change, verdict

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
