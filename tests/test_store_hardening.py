"""CorpusStore against damaged and hostile files: one regression test per finding of issue 17.

Every store file is opened as what it must be (no symlink followed, no FIFO waited on, nothing
but a regular file of plausible size read), the manifest proves itself with its checksum, a
writer cuts only bytes it proved to be leftovers, searches notice files cut under them, locks
die with their holder whatever it forked, and racing creates leave one store and no debris.
Cases that could hang or kill the test process run in a child process with a timeout.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from fastquant import (
    CorpusStore,
    StoreCorruptedError,
    StoreLockedError,
    StoreVersionError,
    StoreWriteError,
)
from fastquant.store import FORMAT_VERSION
from fastquant.store.building import remove_stale_builds
from fastquant.store.checked_json import read_json, seal, unseal
from store_fuzz import snapshot
from test_store import (
    CHUNK_ROWS,
    DIM,
    ROWS,
    _edit_manifest,
    _embeddings,
    _empty_store,
    _filled_store,
    _fixed_ranges,
    _spawn,
    _write_manifest,
)

LAST = "chunks/000004"  # the last, partial chunk of the filled store (2 of 7 rows)
TIMEOUT_S = 20


def _without_lock(tree: dict) -> dict:
    return {name: value for name, value in tree.items() if not name.endswith("writer.lock")}


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _as_format_1(path: Path) -> None:
    """Rewrite the manifest of a store of sign bits as fastquant 0.1 wrote it: format 1, no
    checksum of its own, no kind of bits."""
    body = _manifest(path)
    assert body.pop("bits") == "sign" and body.pop("centre_crc32") is None
    assert body.pop("deleted") is None and body.pop("next_id") == body["rows"]
    for chunk in body["chunks"]:
        assert chunk.pop("generation") == 0 and "ids" not in chunk
        del chunk["file_id"], chunk["first_id"]
    del body["json_crc32"]
    body["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(body, indent=1))


def _within(seconds: float, call) -> object:
    """``call()``'s result, failing the test if it takes longer than ``seconds`` (a hang)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _refused(store_path: Path, match: str) -> None:
    """Opening the store raises StoreCorruptedError matching ``match`` at once; nothing changes."""
    before = _without_lock(snapshot(store_path.parent))
    with pytest.raises(StoreCorruptedError, match=match):
        _within(TIMEOUT_S, lambda: CorpusStore.open(store_path))
    assert _without_lock(snapshot(store_path.parent)) == before


# -- 1, 2: symlinks and hard links are never followed or written through ---------------------


def test_a_lock_file_symlinked_to_a_chunk_is_refused_and_the_chunk_kept(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    (store.path / "writer.lock").unlink()
    (store.path / "writer.lock").symlink_to(store.path / f"{LAST}.codes")
    before = snapshot(tmp_path)
    reader = CorpusStore.open(store.path)
    with pytest.raises(StoreCorruptedError, match="writer.lock is a symbolic link"):
        reader.append(_embeddings(1, 3))
    assert snapshot(tmp_path) == before
    reader.verify()


@pytest.mark.parametrize("kind", ["hard-link-to-chunk", "large-file", "directory", "fifo"])
def test_a_lock_file_that_is_not_a_lock_file_is_refused_unchanged(tmp_path, kind):
    store, _ = _filled_store(tmp_path)
    store.close()
    lock = store.path / "writer.lock"
    lock.unlink()
    if kind == "hard-link-to-chunk":
        os.link(store.path / "chunks/000000.codes", lock)
    elif kind == "large-file":
        lock.write_bytes(b"1" * 100)
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    before = snapshot(tmp_path)
    reader = CorpusStore.open(store.path)
    with pytest.raises(StoreCorruptedError, match="writer.lock"):
        _within(TIMEOUT_S, lambda: reader.append(_embeddings(1, 3)))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["sibling", "outside"])
def test_a_chunk_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path, target):
    store, _ = _filled_store(tmp_path)
    store.close()
    chunk = store.path / f"{LAST}.codes"
    if target == "sibling":
        destination = store.path / "chunks/000003.codes"
    else:
        destination = tmp_path / "outside.codes"
        destination.write_bytes(chunk.read_bytes() + b"\x01" * 600)
    chunk.unlink()
    chunk.symlink_to(destination)
    _refused(store.path, "000004.codes is a symbolic link")
    with pytest.raises(StoreCorruptedError, match="symbolic link"):
        store.append(_embeddings(1, 3))
    with pytest.raises(StoreCorruptedError, match="symbolic link"):
        store.verify()
    if target == "outside":
        assert destination.stat().st_size == 2 * DIM + 600


def test_a_hard_linked_last_chunk_is_not_written(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    os.link(store.path / f"{LAST}.bits", tmp_path / "backup.bits")
    before = _without_lock(snapshot(tmp_path))
    reopened = CorpusStore.open(store.path)  # reading is fine
    assert len(reopened) == ROWS
    with pytest.raises(StoreCorruptedError, match="2 hard links"):
        reopened.append(_embeddings(1, 3))
    assert _without_lock(snapshot(tmp_path)) == before


def test_a_symlinked_chunks_folder_is_refused(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    os.rename(store.path / "chunks", tmp_path / "elsewhere")
    (store.path / "chunks").symlink_to(tmp_path / "elsewhere")
    _refused(store.path, "chunks is a symbolic link, not a directory")


# -- 3, 4: nothing committed is cut ----------------------------------------------------------


def test_an_append_refuses_a_manifest_with_fewer_rows_than_its_last_chunk_holds(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    body = _manifest(store.path)
    body["chunks"][-1]["rows"] -= 1
    body["rows"] -= 1
    body["next_id"] -= 1
    _write_manifest(store.path, body)  # a manifest that proves itself, lying about the rows
    before = _without_lock(snapshot(tmp_path))
    reopened = CorpusStore.open(store.path)
    assert len(reopened) == ROWS - 1
    with pytest.raises(StoreCorruptedError, match="000004.bits fails its checksum"):
        reopened.append(_embeddings(1, 3))
    assert _without_lock(snapshot(tmp_path)) == before
    with pytest.raises(StoreCorruptedError, match="checksum"):
        reopened.verify()


def test_an_edited_manifest_fails_its_own_checksum(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    body = _manifest(store.path)
    del body["chunks"][-1]
    body["rows"] = 4 * CHUNK_ROWS
    (store.path / "manifest.json").write_text(json.dumps(body, indent=1))
    _refused(store.path, "manifest.json fails its checksum")


def test_a_format_1_manifest_cannot_prove_unlisted_chunks_are_leftovers(tmp_path):
    store, _ = _filled_store(tmp_path, bits="sign")
    store.close()
    _as_format_1(store.path)  # 0.1 had no checksum
    body = _manifest(store.path)
    del body["chunks"][-1]
    body.update(rows=4 * CHUNK_ROWS)
    (store.path / "manifest.json").write_text(json.dumps(body))
    before = _without_lock(snapshot(tmp_path))
    reopened = CorpusStore.open(store.path)
    assert len(reopened) == 4 * CHUNK_ROWS
    with pytest.raises(StoreCorruptedError, match="000004.bits, 000004.codes, which the format-1"):
        reopened.append(_embeddings(1, 3))
    assert _without_lock(snapshot(tmp_path)) == before


def test_an_append_refuses_to_cut_a_last_chunk_that_fails_its_crc(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    codes = store.path / f"{LAST}.codes"
    data = bytearray(codes.read_bytes())
    data[3] ^= 0x10
    codes.write_bytes(bytes(data) + b"\x07" * 50)  # damaged, with bytes to cut after it
    before = _without_lock(snapshot(tmp_path))
    with pytest.raises(StoreCorruptedError, match="000004.codes fails its checksum"):
        CorpusStore.open(store.path).append(_embeddings(1, 3))
    assert _without_lock(snapshot(tmp_path)) == before


def test_a_format_1_store_opens_appends_and_is_written_as_format_2(tmp_path):
    store, corpus_f32 = _filled_store(tmp_path, bits="sign")
    store.close()
    query_f32 = _embeddings(9, 3)
    expected = store.search(query_f32, k=5)
    _as_format_1(store.path)
    for name in ("bits", "codes"):  # an interrupted 0.1 append: leftovers after the partial chunk
        with open(store.path / f"{LAST}.{name}", "ab") as handle:
            handle.write(b"\x01" * 40)
        (store.path / f"chunks/000005.{name}").write_bytes(b"\x02" * 40)
    legacy = CorpusStore.open(store.path)
    assert legacy.manifest.format_version == 1
    for got, want in zip(legacy.search(query_f32, k=5), expected):
        np.testing.assert_array_equal(got, want)
    legacy.verify()
    more_f32 = _embeddings(3, 9)
    legacy.append(more_f32)
    body = _manifest(store.path)
    assert body["format_version"] == FORMAT_VERSION and list(body)[-1] == "json_crc32"
    assert (body["bits"], body["centre_crc32"]) == ("sign", None)  # it stays a store of sign bits
    upgraded = CorpusStore.open(store.path)
    assert len(upgraded) == ROWS + 9
    upgraded.verify()
    np.testing.assert_array_equal(upgraded.search(more_f32, 1)[1][:, 0], np.arange(ROWS, ROWS + 9))


# -- 5, 6: FIFOs, devices and huge files are refused at once ---------------------------------


@pytest.mark.parametrize("name", ["manifest.json", "calibration.npy", "chunks/000002.bits"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_store_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, name, kind):
    store, _ = _filled_store(tmp_path)
    store.close()
    file = store.path / name
    file.unlink()
    if kind == "fifo":
        os.mkfifo(file)
    elif kind == "dev-zero":
        file.symlink_to("/dev/zero")
    else:
        file.mkdir()
    _refused(store.path, name.split("/")[-1])
    with pytest.raises(StoreCorruptedError, match=name.split("/")[-1]):
        _within(TIMEOUT_S, store.verify)


def test_a_huge_manifest_is_refused_before_it_is_read(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    with open(store.path / "manifest.json", "r+b") as handle:
        handle.truncate(1 << 40)  # sparse: 1 TiB of zeros
    _refused(store.path, "manifest.json holds 1,099,511,627,776 bytes")


def test_deeply_nested_json_is_refused_without_recursion(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    text = json.dumps(_manifest(store.path))
    (store.path / "manifest.json").write_text(text[:-1] + ', "x": ' + "[" * 100_000)
    _refused(store.path, "nests 100001 levels deep")


@pytest.mark.parametrize(
    "text, problem",
    [
        pytest.param('{"a": 1, "a": 2}', "appears twice", id="duplicate-key"),
        pytest.param('{"a": NaN}', "NaN", id="nan"),
        pytest.param('{"a": "[[[["}', None, id="brackets-in-strings-are-not-nesting"),
    ],
)
def test_checked_json_refuses_what_json_loads_would_accept(tmp_path, text, problem):
    file = tmp_path / "x.json"
    file.write_text(text)
    if problem is None:
        assert read_json(file, max_depth=1) == {"a": "[[[["}
    else:
        with pytest.raises(StoreCorruptedError, match=problem):
            read_json(file)


def test_checked_json_round_trips_and_catches_a_changed_value(tmp_path):
    body = {"b": [1, {"c": "é"}], "a": None}
    file = tmp_path / "x.json"
    file.write_bytes(seal(body))
    assert unseal(file, read_json(file)) == body
    file.write_text(file.read_text().replace('"é"', '"e"'))
    with pytest.raises(StoreCorruptedError, match="fails its checksum"):
        unseal(file, read_json(file))


# -- 7, 8: a store damaged under an open store, and refresh -----------------------------------

SEARCH_AFTER_DAMAGE = """
    import os, shutil, sys
    import numpy as np
    from fastquant import CorpusStore, StoreCorruptedError

    path, how = sys.argv[1], sys.argv[2]
    store = CorpusStore.open(path)
    query = np.random.default_rng(0).standard_normal((2, store.dim)).astype(np.float32)
    before = store.search(query, 5)
    codes = os.path.join(path, "chunks", "000000.codes")
    if how == "truncate":
        os.truncate(codes, 0)
    elif how == "delete":
        os.unlink(codes)
    elif how == "replace":
        shutil.copy(codes, codes + ".copy")
        os.replace(codes + ".copy", codes)
    for call in (lambda: store.search(query, 5), lambda: store.exact_search(query, 5),
                 store.refresh):
        try:
            call()
            print("no error")
        except StoreCorruptedError as error:
            print("refused:", error)
    print(len(store))
"""


@pytest.mark.parametrize("how", ["truncate", "delete", "replace"])
def test_a_search_on_a_chunk_cut_or_replaced_under_it_raises_instead_of_sigbus(tmp_path, how):
    store, _ = _filled_store(tmp_path)
    store.close()
    child = _spawn(SEARCH_AFTER_DAMAGE, store.path, how)
    out, err = child.communicate()
    assert child.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1] == str(ROWS)  # refresh failed: the old snapshot stays
    for line in lines[:2]:
        assert line.startswith("refused:") and "000000.codes" in line and "while the store" in line
    expected = "no error" if how == "replace" else "refused:"  # a copy of equal bytes maps fine
    assert lines[2].startswith(expected)


def test_refresh_checks_what_open_checks(tmp_path):
    store, _ = _filled_store(tmp_path)
    reader = CorpusStore.open(store.path)
    query_f32 = _embeddings(4, 2)
    expected = reader.search(query_f32, 5)
    body = _manifest(store.path)
    body.update(dim=DIM + 1, bits_width=(DIM + 8) // 8)
    _write_manifest(store.path, body)
    for check in (lambda: CorpusStore.open(store.path), reader.refresh):
        with pytest.raises(StoreCorruptedError, match="calibration.npy has dimension 20"):
            check()
    assert reader.dim == DIM  # still the snapshot it had, and it still answers
    np.testing.assert_array_equal(reader.search(query_f32, 5)[1], expected[1])


# -- 12: locks die with the writer, whatever it forked ---------------------------------------

APPEND_ONCE = """
    import sys
    import numpy as np
    from fastquant import CorpusStore, StoreLockedError

    store = CorpusStore.open(sys.argv[1])
    try:
        store.append(np.ones((2, store.dim), np.float32))
        print("appended")
    except StoreLockedError as error:
        print("locked:", error)
"""


def _append_in_another_process(path: Path) -> str:
    child = _spawn(APPEND_ONCE, path)
    out, err = child.communicate()
    assert child.returncode == 0, err
    return out.strip()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("method", ["os.fork", "fork", "spawn", "forkserver"])
def test_a_closed_writer_locks_nobody_out_while_its_children_live(tmp_path, method):
    store, _ = _filled_store(tmp_path)  # holds the writer lock
    if method == "os.fork":
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children = None
    else:
        children = multiprocessing.get_context(method).Pool(1)
        children.apply_async(_sleep, (30,))
    try:
        assert _append_in_another_process(store.path).startswith("locked:")
        store.close()
        assert _append_in_another_process(store.path) == "appended"
    finally:
        if children is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        else:
            children.terminate()
            children.join()


FORK_THEN_WAIT = """
    import os, sys, time
    import numpy as np
    from fastquant import CorpusStore

    store = CorpusStore.open(sys.argv[1])
    store.append(np.ones((2, store.dim), np.float32))
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    print(child, flush=True)
    time.sleep(60)
"""


def test_a_killed_writer_locks_nobody_out_while_its_child_lives(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    writer = _spawn(FORK_THEN_WAIT, store.path)
    child = int(writer.stdout.readline())
    try:
        assert _append_in_another_process(store.path).startswith("locked:")
        writer.kill()
        writer.wait()
        os.kill(child, 0)  # the writer's child lives on
        assert _append_in_another_process(store.path) == "appended"
    finally:
        writer.kill()
        os.kill(child, signal.SIGKILL)


def test_a_lock_held_after_its_writer_died_says_so(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fd = os.open(store.path / "writer.lock", os.O_RDWR)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, str(dead.pid).encode())
        with pytest.raises(StoreLockedError, match=f"its pid, {dead.pid}, is not running"):
            CorpusStore.open(store.path).append(_embeddings(1, 2))
    finally:
        os.close(fd)


# -- 13: racing creates, stale build folders ----------------------------------------------------

CREATE_AT_ONCE = """
    import sys, time
    import numpy as np
    from fastquant import CorpusStore

    start = float(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))
    try:
        CorpusStore.create(sys.argv[1], 8, ranges=np.array([[-1.0] * 8, [1.0] * 8], np.float32))
        print("created")
    except FileExistsError as error:
        print("exists:", error)
"""


def test_racing_creates_give_one_store_and_file_exists_errors(tmp_path):
    start = time.time() + 3.0
    children = [_spawn(CREATE_AT_ONCE, tmp_path / "store", start) for _ in range(6)]
    outputs = []
    for child in children:
        out, err = child.communicate()
        assert child.returncode == 0, err
        outputs.append(out.strip())
    assert sorted(outputs)[0] == "created" and sorted(outputs)[1].startswith("exists:"), outputs
    assert all(out == "created" or out.startswith("exists:") for out in outputs)
    assert os.listdir(tmp_path) == ["store"]
    assert len(CorpusStore.open(tmp_path / "store")) == 0


def test_a_create_that_fails_leaves_no_build_folder(tmp_path):
    import fastquant.store.corpus as corpus_module

    def disk_full(path, manifest):
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus_module, "write_manifest", disk_full)
        with pytest.raises(OSError, match="No space"):
            _empty_store(tmp_path / "store")
    assert os.listdir(tmp_path) == []


def test_stale_build_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".store.creating-{dead.pid}"  # as fastquant 0.1 named them
    stale_new = tmp_path / f".store.creating-{dead.pid}-0a1b2c3d"
    live = tmp_path / f".store.creating-{os.getpid()}-99999999"  # a live builder's
    other = tmp_path / f".other.creating-{dead.pid}"  # another store's
    for folder in (stale, stale_new, live, other):
        (folder / "chunks").mkdir(parents=True)
    locked_dead = tmp_path / f".store.creating-{dead.pid}-77777777"  # a pid not ours to judge
    (locked_dead / "chunks").mkdir(parents=True)
    holder = _spawn(HOLD_FOLDER_LOCK, locked_dead)
    assert holder.stdout.readline().strip() == "locked"
    try:
        removed = remove_stale_builds(tmp_path / "store")
        assert sorted(removed) == sorted([stale, stale_new])
        _empty_store(tmp_path / "store")
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["store", live.name, other.name, locked_dead.name]
    )


HOLD_FOLDER_LOCK = """
    import sys, time
    from pathlib import Path
    from fastquant.store.lock import WriterLock

    lock = WriterLock(Path(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(60)
"""


# -- 14, 15, 16, 18: wrong kinds of things, wrong fields, full disks --------------------------


def test_chunks_that_is_a_file_is_refused(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    os.rename(store.path / "chunks", tmp_path / "moved")
    (store.path / "chunks").write_bytes(b"x")
    _refused(store.path, "chunks is a regular file, not a directory")


@pytest.mark.parametrize(
    "name, make",
    [
        pytest.param("000009.bits", Path.mkdir, id="directory-with-a-chunk-name"),
        pytest.param("notes.txt", lambda p: p.write_text("mine"), id="a-file-of-another-name"),
        pytest.param("000005.codes", lambda p: p.symlink_to("/etc/hostname"), id="symlink"),
    ],
)
def test_a_stranger_in_chunks_stops_an_append_before_anything_changes(tmp_path, name, make):
    store, _ = _filled_store(tmp_path)
    store.close()
    with open(store.path / f"{LAST}.codes", "ab") as handle:  # a leftover it could cut
        handle.write(b"\x01" * 30)
    make(store.path / "chunks" / name)
    before = _without_lock(snapshot(tmp_path))
    reopened = CorpusStore.open(store.path)  # readers ignore it
    assert len(reopened) == ROWS
    with pytest.raises(StoreCorruptedError, match=f"{name} is .*move it away"):
        reopened.append(_embeddings(1, 3))
    assert _without_lock(snapshot(tmp_path)) == before


def test_a_chunk_deleted_while_a_writer_is_open_stops_its_next_append(tmp_path):
    store, _ = _filled_store(tmp_path)
    (store.path / "chunks/000001.bits").unlink()
    with pytest.raises(StoreCorruptedError, match="000001.bits"):
        store.append(_embeddings(1, 3))


def test_only_the_writers_own_temp_files_are_removed(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (store.path / ".manifest.json.tmp-123").write_text("{half")
    (store.path / ".calibration.npy.tmp-77").symlink_to(outside)
    (store.path / ".notes.tmp-5").write_text("mine")
    CorpusStore.open(store.path).append(_embeddings(1, 3))
    names = set(os.listdir(store.path))
    assert ".manifest.json.tmp-123" not in names
    assert {".calibration.npy.tmp-77", ".notes.tmp-5"} <= names
    assert outside.read_text() == "keep"


@pytest.mark.parametrize(
    "changes, problem",
    [
        pytest.param({"format_version": -1}, "format_version -1 is not a store format", id="v-1"),
        pytest.param({"format_version": 0}, "format_version 0", id="v0"),
        pytest.param({"format_version": "2"}, "not an integer", id="v-string"),
        pytest.param({"format_version": True}, "not an integer", id="v-bool"),
        pytest.param({"bits_width": -1}, "bits_width is -1", id="bits-width"),
        pytest.param({"dim": 2**80}, "dim is", id="huge-dim"),
        pytest.param({"calibration_crc32": 2**32}, "calibration_crc32", id="crc-range"),
        pytest.param({"calibration_source": 5}, "calibration_source", id="source-type"),
        pytest.param({"surprise": 1}, "'surprise' is not part of the format", id="unknown"),
        pytest.param({"chunks": {}}, "chunks is dict", id="chunks-not-a-list"),
    ],
)
def test_nonsense_manifest_fields_are_refused(tmp_path, changes, problem):
    store, _ = _filled_store(tmp_path)
    store.close()
    _edit_manifest(store.path, **changes)
    _refused(store.path, problem)


@pytest.mark.parametrize(
    "key, value, problem",
    [
        pytest.param("bits", "../../etc/passwd", "chunk 4: bits is '../../etc/passwd'", id="path"),
        pytest.param("codes", "chunks/000003.codes", "chunk 4: codes", id="other-chunk"),
        pytest.param("rows", 0, "chunk 4: rows is 0", id="rows-zero"),
        pytest.param("bits_crc32", -1, "bits_crc32 is -1", id="crc-negative"),
        pytest.param("extra", 1, "chunk 4: field 'extra'", id="unknown"),
    ],
)
def test_nonsense_chunk_fields_are_refused(tmp_path, key, value, problem):
    store, _ = _filled_store(tmp_path)
    store.close()
    body = _manifest(store.path)
    body["chunks"][-1][key] = value
    _write_manifest(store.path, body)
    _refused(store.path, problem)


def test_a_newer_format_is_refused_before_its_checksum_is_read(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    body = _manifest(store.path)
    newer = FORMAT_VERSION + 1
    body.update(format_version=newer, json_crc32=f"a format-{newer} checksum")
    (store.path / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(StoreVersionError, match=f"format {newer}"):
        CorpusStore.open(store.path)


@contextmanager
def full_disk_for(temp_name: str) -> Iterator[None]:
    """Inside the block, every write to a temp file (``write_file_atomically``) whose name
    matches the regex ``temp_name`` fails with ENOSPC, as on a full disk."""
    import fastquant.store.safe_files as safe_files

    real_create = safe_files._create_new

    def on_a_full_disk(temp: Path) -> int:
        fd = real_create(temp)
        if re.fullmatch(temp_name, temp.name):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, fd)  # every write to the temp file now fails with ENOSPC
            os.close(full)
        return fd

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(safe_files, "_create_new", on_a_full_disk)
        yield


@pytest.mark.parametrize("file", ["manifest.json", "calibration.npy"])
def test_a_full_disk_while_writing_the_manifest_or_calibration_names_the_file(tmp_path, file):
    store = _empty_store(tmp_path / "store", ranges=None)  # the first append writes the ranges
    before = _without_lock(snapshot(tmp_path))
    with full_disk_for(rf"\.{re.escape(file)}\.tmp-\d+"):
        with pytest.raises(
            StoreWriteError, match=f"No space left on device \\(writing .*/{file}\\)"
        ):
            store.append(_embeddings(1, 5))
    after = _without_lock(snapshot(tmp_path))
    assert not [name for name in after if ".tmp-" in name]  # the temp file was removed
    assert after.keys() - {"store/calibration.npy", "store/centre.npy"} == before.keys()
    store.append(_embeddings(1, 5))
    CorpusStore.open(store.path).verify()


def test_a_calibration_with_minima_above_maxima_is_named(tmp_path):
    store, _ = _filled_store(tmp_path)
    store.close()
    file = store.path / "calibration.npy"
    np.save(file, _fixed_ranges()[::-1].copy())
    _edit_manifest(store.path, calibration_crc32=zlib.crc32(file.read_bytes()))
    with pytest.raises(StoreCorruptedError) as error:
        CorpusStore.open(store.path)
    assert str(file) in str(error.value) and "BytesIO" not in str(error.value)


def test_the_store_written_is_the_documented_format(tmp_path):
    store, _ = _filled_store(tmp_path)
    body = _manifest(store.path)
    assert list(body) == [
        "format",
        "format_version",
        "dim",
        "bits_width",
        "chunk_rows",
        "rows",
        "calibration_crc32",
        "calibration_source",
        "bits",
        "centre_crc32",
        "next_id",
        "deleted",
        "chunks",
        "json_crc32",
    ]
    assert body["bits"] == "centred"
    assert list(body["chunks"][0]) == [
        "bits",
        "codes",
        "rows",
        "bits_crc32",
        "codes_crc32",
        "file_id",
        "generation",
        "first_id",
        "factors",
        "factors_crc32",
    ]
    assert body["format_version"] == FORMAT_VERSION
    crc = body.pop("json_crc32")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert zlib.crc32(canonical.encode()) == crc


def test_a_writer_reads_no_chunk_bytes_unless_it_has_something_to_cut(tmp_path):
    import fastquant.store.leftovers as leftovers

    store, corpus_f32 = _filled_store(tmp_path)
    store.close()
    proofs = []
    real = leftovers.require_crc32
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(leftovers, "require_crc32", lambda *args: proofs.append(args[3].name))
        CorpusStore.open(store.path).append(_embeddings(1, 3))
        assert proofs == []  # cleanly closed: nothing past the committed rows, nothing to prove
        with open(store.path / f"{LAST}.codes", "ab") as handle:
            handle.write(b"\x01" * 30)
        patch.setattr(
            leftovers, "require_crc32", lambda *args: (proofs.append(args[3].name), real(*args))
        )
        writer = CorpusStore.open(store.path)
        writer.append(_embeddings(2, 1))
        writer.append(_embeddings(3, 1))  # proven once per writer
    assert proofs == ["000004.codes"]
    assert len(CorpusStore.open(store.path)) == ROWS + 5


def test_the_documented_manifest_proves_itself(tmp_path):
    doc = (Path(__file__).parents[1] / "docs" / "store_format.md").read_text()
    example = doc.split("```json\n", 1)[1].split("\n```", 1)[0]
    file = tmp_path / "manifest.json"
    file.write_text(example)
    assert unseal(file, read_json(file))["format_version"] == FORMAT_VERSION
