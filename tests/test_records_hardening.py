"""The text index beside a store (``records/``, ``index.json``) against damaged and hostile files.

One regression test per finding of issue 17 outside the corpus store: files opened as what they
must be, ``index.json`` with its own checksum, ``verify`` covering the records, a resume that
never cuts a committed record, a full disk that names the records file. Cases that could hang or
kill the test process run in a child process or a thread with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fastquant.embed import index_file
from fastquant.records import RecordLog
from fastquant.store import CorpusStore, StoreCorruptedError, StoreVersionError, StoreWriteError
from fastquant.text_store import FORMAT_VERSION as TEXT_FORMAT_VERSION
from fastquant.text_store import TextStore, verify_store
from fastquant.texts import TextIndex
from store_fuzz import reseal, snapshot
from test_embed import HashEncoder, write_parquet
from test_store_hardening import _as_format_1, _within, full_disk_for

TIMEOUT_S = 20
OPTIONS = {"batch_size": 10, "calibration_rows": 10, "commit_seconds": 0, "progress": False}


def _indexed(
    folder: Path, rows: int = 40, total: int = 60, bits: str = "centred"
) -> tuple[Path, Path]:
    """``(input, store)``: rows 0-39 of a 60-row input indexed in commits of 10 rows, into a
    store of ``bits`` (``"sign"``: created empty first, as ``index_file`` makes centred ones)."""
    source = write_parquet(folder, total)
    store = folder / "store"
    if bits != "centred":
        ranges = np.array([[-1.0] * HashEncoder.dim, [1.0] * HashEncoder.dim], np.float32)
        CorpusStore.create(store, HashEncoder.dim, ranges=ranges, bits=bits).close()
    index_file(source, store, text_column="title", model=HashEncoder(), rows=(0, rows), **OPTIONS)
    return source, store


def _resume(source: Path, store: Path, rows: int = 60):
    return index_file(
        source, store, text_column="title", model=HashEncoder(), rows=(0, rows), **OPTIONS
    )


def _records(store: Path) -> list[Path]:
    return sorted((store / "records").glob("*.arrow"))


def _search(store: Path) -> list[dict]:
    with TextIndex.open(store, encoder=HashEncoder()) as text_index:
        return [hit.record for hit in text_index.search("doc 7", k=3)[0].hits]


def _every_reader_refuses(store: Path, match: str) -> None:
    """verify, a text search and a resume all raise StoreCorruptedError matching ``match`` at
    once, and change nothing."""
    source = store.parent / "docs.parquet"
    before = snapshot(store.parent)
    for use in (
        lambda: verify_store(store),
        lambda: _search(store),
        lambda: _resume(source, store),
    ):
        with pytest.raises(StoreCorruptedError, match=match):
            _within(TIMEOUT_S, use)
    after = snapshot(store.parent)
    assert {k: v for k, v in after.items() if "writer.lock" not in k} == {
        k: v for k, v in before.items() if "writer.lock" not in k
    }


# -- 5, 6, 14: files opened as what they must be ------------------------------------------------


@pytest.mark.parametrize("target", ["first records", "last records", "index.json", "marker"])
@pytest.mark.parametrize(
    "kind", ["fifo", "device", "directory", "dangling", "symlink outside", "hard link"]
)
def test_a_text_index_file_that_is_not_a_regular_file_is_refused(tmp_path, target, kind):
    _, store = _indexed(tmp_path)
    file = {
        "first records": _records(store)[0],
        "last records": _records(store)[-1],
        "index.json": store / "records" / "index.json",
        "marker": store / "text_index.json",
    }[target]
    data = file.read_bytes()
    file.unlink()
    if kind == "fifo":
        os.mkfifo(file)
    elif kind == "device":
        file.symlink_to("/dev/zero")
    elif kind == "directory":
        file.mkdir()
    elif kind == "dangling":
        file.symlink_to(tmp_path / "nothing")
    else:
        (tmp_path / "copy").write_bytes(data)
        if kind == "symlink outside":
            file.symlink_to(tmp_path / "copy")
        else:
            os.link(tmp_path / "copy", file)
    if kind == "hard link":  # the same bytes under two names: read as they are, never cut
        assert verify_store(store)[0] == 40 and _search(store)
        _resume(tmp_path / "docs.parquet", store)
        assert (tmp_path / "copy").read_bytes() == data
        return
    _every_reader_refuses(store, file.name)


def test_deeply_nested_or_huge_json_is_refused_naming_the_file(tmp_path):
    _, store = _indexed(tmp_path)
    file = store / "records" / "index.json"
    body = json.loads(file.read_text())
    file.write_text(
        json.dumps(reseal(body))[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    _every_reader_refuses(store, "index.json is not a fastquant index description: its JSON nests")
    with open(file, "wb") as handle:
        handle.truncate(1 << 30)  # sparse: a gigabyte read would be the failure
    _every_reader_refuses(store, "cannot read .*index.json: it holds 1,073,741,824 bytes")


# -- 15: index.json carries its checksum; verify covers the records -------------------------------


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("dim", "24", "'dim' is '24', not a int"),
        ("dim", 1 << 40, "'dim' is 1099511627776"),
        ("text", "title", "'text' is 'title', not a dict"),
        ("text", {"template": 5}, "'text' is {'template': 5}"),
        ("columns", "title", "'columns' is 'title', not a list"),
        ("columns", ["title", "title"], "'columns' is ['title', 'title'], not a list of distinct"),
        ("model", 5, "'model' is 5, not a str"),
        ("start_row", -1, "'start_row' is -1"),
        ("surprise", 1, "unknown field 'surprise'"),
    ],
)
def test_wrong_fields_in_index_json_name_the_file(tmp_path, key, value, why):
    _, store = _indexed(tmp_path)
    file = store / "records" / "index.json"
    body = json.loads(file.read_text())
    file.write_text(json.dumps({**body, key: value}))  # the checksum no longer matches
    _every_reader_refuses(store, "index.json fails its checksum")
    file.write_text(json.dumps(reseal({**body, key: value})))  # a checksum to match
    _every_reader_refuses(
        store, "index.json is not a fastquant index description: " + re.escape(why)
    )


def test_index_json_without_its_checksum_or_of_a_newer_format_is_refused(tmp_path):
    _, store = _indexed(tmp_path)
    file = store / "records" / "index.json"
    body = json.loads(file.read_text())
    file.write_text(json.dumps({k: v for k, v in body.items() if k != "json_crc32"}))
    _every_reader_refuses(store, "index.json is corrupted: it has no integer 'json_crc32'")
    newer = TEXT_FORMAT_VERSION + 1  # 3 is an index.json with a key column
    file.write_text(json.dumps(reseal({**body, "format_version": newer})))
    with pytest.raises(StoreVersionError, match=f"index.json is in text index format {newer}"):
        verify_store(store)


def test_an_index_json_of_fastquant_0_1_is_read_and_sealed_by_the_next_run(tmp_path):
    source, store = _indexed(tmp_path)
    file = store / "records" / "index.json"
    body = json.loads(file.read_text())
    older = {k: v for k, v in body.items() if k not in ("json_crc32", "format_version")}
    file.write_text(json.dumps(older, indent=1))
    (store / "text_index.json").unlink()  # 0.1 wrote no marker either
    assert verify_store(store)[0] == 40 and not TextStore.open(store).sealed
    CorpusStore.open(store).close()
    assert _resume(source, store).rows_total == 60
    assert json.loads(file.read_text()) == body  # sealed, as new stores write it
    assert TextStore.open(store).marked and verify_store(store)[0] == 60


def test_verify_needs_the_records_of_a_store_built_by_index(tmp_path):
    _, store = _indexed(tmp_path)
    for part in _records(store):
        part.unlink()
    (store / "records" / "index.json").unlink()
    (store / "records").rmdir()
    with pytest.raises(StoreCorruptedError, match="index.json is missing, but .*text_index.json"):
        verify_store(store)  # was "ok: 40 rows" while search failed


def test_a_duplicated_records_file_is_named(tmp_path):
    _, store = _indexed(tmp_path)
    second = _records(store)[1]
    copy = second.with_name(
        second.name.replace("-10-", "-10-").replace(second.name[-13:-6], "0000000")
    )
    copy.write_bytes(second.read_bytes())
    _every_reader_refuses(store, "both hold record 10: each record is written once")
    copy.unlink()
    overlap = second.with_name("000000000015-5-00000000.arrow")
    overlap.write_bytes(b"x")
    _every_reader_refuses(store, "both hold record 15")
    overlap.unlink()
    second.unlink()
    _every_reader_refuses(store, r"records 10 to 19 are missing \(after .*000000000000-10-")


def test_a_records_file_with_other_columns_or_another_dimension_is_named(tmp_path):
    _, store = _indexed(tmp_path)
    last = _records(store)[-1]
    (tmp_path / "other").mkdir()
    columns = pa.RecordBatch.from_pylist([{"x": i} for i in range(10)])
    RecordLog(tmp_path / "other").write(0, columns)
    (other,) = _records(tmp_path / "other")
    last.unlink()
    other.rename(last.with_name(f"000000000030-10-{other.name[-14:-6]}.arrow"))
    with pytest.raises(StoreCorruptedError, match=r"has columns \['x'\], the first records file"):
        verify_store(store)


def test_a_damaged_first_records_file_names_the_file_on_resume(tmp_path):
    source, store = _indexed(tmp_path)
    first = _records(store)[0]
    first.write_bytes(first.read_bytes()[:-40])  # its footer cut: "Not an Arrow file", unnamed
    before = CorpusStore.open(store)
    with pytest.raises(StoreCorruptedError, match=f"cannot read records file .*{first.name}"):
        _resume(source, store)
    assert len(CorpusStore.open(store)) == len(before) == 40  # nothing committed


# -- 3: a resume never cuts a committed record ---------------------------------------------------


def _lower_the_manifest(store: Path, by: int, *, format_1: bool) -> None:
    """Lower the last chunk's rows by ``by`` with CRCs to match: a manifest that passes every
    check (``format_1``: a store of sign bits, first rewritten as fastquant 0.1 wrote it)."""
    if format_1:
        _as_format_1(store)
    body = json.loads((store / "manifest.json").read_text())
    chunk = body["chunks"][-1]
    rows = chunk["rows"]
    chunk["rows"] -= by
    body["rows"] -= by
    if "next_id" in body:  # format 3 on: the ids end with the rows, as before the lost append
        body["next_id"] -= by
    for key in [key for key in chunk if key.endswith("_crc32")]:  # every file of the chunk
        data = (store / chunk[key.removesuffix("_crc32")]).read_bytes()
        chunk[key] = zlib.crc32(data[: chunk["rows"] * (len(data) // rows)])
    (store / "manifest.json").write_text(json.dumps(body if format_1 else reseal(body), indent=1))


@pytest.mark.parametrize("format_1", [True, False], ids=["format-1", "resealed"])
@pytest.mark.parametrize(
    ("by", "message"),
    [
        (5, "holds records 30 to 39, the rows of one commit"),
        (20, "holds 2 commits of records past the store's 20 rows"),
    ],
)
def test_a_store_that_lost_committed_rows_is_not_cut_further(tmp_path, format_1, by, message):
    """Issue 17: "through fastquant index resume cut a records file from rows 200-299 to 200-249
    and exited 0" (and the store's writer cut the chunk's rows as leftovers)."""
    from fastquant.cli import main

    source, store = _indexed(tmp_path, bits="sign" if format_1 else "centred")
    _lower_the_manifest(store, by, format_1=format_1)
    before = snapshot(tmp_path)
    with pytest.raises(StoreCorruptedError, match=message):
        _resume(source, store)
    command = ["index", str(source), "--store", str(store), "--text-column", "title"]
    assert main([*command, "--model", "wordllama", "--no-progress"]) == 1
    with pytest.raises(StoreCorruptedError, match=message):
        verify_store(store)
    assert snapshot(tmp_path) == before  # records and chunks alike


def test_one_commit_of_records_past_the_store_is_an_interrupted_run_and_is_cut(tmp_path):
    source, store = _indexed(tmp_path)
    _lower_the_manifest(store, 10, format_1=False)  # as if the last append never committed
    assert verify_store(store)[0] == 30  # a legal state: records one commit ahead
    assert _resume(source, store).resumed_from == 30
    assert verify_store(store)[0] == 60 and len(_records(store)) == 6


# -- 16: a full disk while writing records --------------------------------------------------------


def test_a_full_disk_while_writing_records_names_the_file_and_leaves_nothing(tmp_path):
    source, store = _indexed(tmp_path)
    before = snapshot(tmp_path)
    with full_disk_for(r"\.\d{12}-\d+-[0-9a-f]{8}\.arrow\.tmp-\d+"):
        with pytest.raises(
            StoreWriteError,
            match=r"writing records 40 to 49 failed, nothing was committed: \[Errno 28\] No space "
            r"left on device \(writing .*/records/000000000040-10-[0-9a-f]{8}\.arrow\)",
        ):
            _resume(source, store)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "writer.lock" not in k} == {
        k: v for k, v in before.items() if "writer.lock" not in k
    }
    assert _resume(source, store).rows_total == 60


def test_stale_temp_files_of_a_killed_run_are_removed_and_strangers_kept(tmp_path):
    source, store = _indexed(tmp_path)
    records = store / "records"
    (records / ".000000000040-10-0a0b0c0d.arrow.tmp-4242").write_bytes(b"half a file")
    (records / ".000000000040-10-0a0b0c0e.arrow.tmp-4243").symlink_to(tmp_path / "docs.parquet")
    (records / ".000000000040-10-0a0b0c0f.arrow.tmp-4244").mkdir()
    (records / "notes.txt").write_text("mine")
    _resume(source, store)
    names = {path.name for path in records.iterdir()}
    assert ".000000000040-10-0a0b0c0d.arrow.tmp-4242" not in names
    assert {
        ".000000000040-10-0a0b0c0e.arrow.tmp-4243",
        ".000000000040-10-0a0b0c0f.arrow.tmp-4244",
        "notes.txt",
    } <= names
    assert (tmp_path / "docs.parquet").exists() and verify_store(store)[0] == 60


# -- 7 for records: a file cut under an open index ------------------------------------------------


def test_a_records_file_cut_under_an_open_index_is_an_error_not_a_crash(tmp_path):
    _, store = _indexed(tmp_path)
    script = (
        "import sys\nfrom pathlib import Path\nfrom fastquant.texts import TextIndex\n"
        "from fastquant.store import StoreCorruptedError\n"
        "store = Path(sys.argv[1])\nindex = TextIndex.open(store)\n"
        "first = index.records.get(range(40))\n"
        "for part in sorted((store / 'records').glob('*.arrow')):\n"
        "    part.write_bytes(part.read_bytes()[:100])\n"
        "try:\n    index.records.get(range(40))\nexcept StoreCorruptedError as error:\n"
        "    print(error)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(store)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-500:]
    assert "was cut to 100 bytes" in run.stdout
