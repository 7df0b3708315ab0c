"""Deletes, filtered search and compaction: a store answers exactly like a fresh store of the
rows it may return, on every search path, through crashes and concurrent readers."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastquant import CorpusStore, StoreCorruptedError, _engine
from fastquant.store.manifest import deleted_file

SCAN_RESCORE = [(scan, rescore) for scan in _engine.SCANS for rescore in _engine.RESCORE_MODES]
CHILD_TIMEOUT_S = 120
#: The module (not the function of the same name ``fastquant._engine`` exports).
engine_search = importlib.import_module("fastquant._engine.search")


def _rows(seed: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _twin_args(dim: int, seed: int = 7) -> dict:
    """Fixed ranges and centre, so that two stores of different rows quantize alike."""
    rng = np.random.default_rng(seed)
    ranges = np.stack([np.full(dim, -3.0), np.full(dim, 3.0)]).astype(np.float32)
    return {"ranges": ranges, "centre": (0.1 * rng.standard_normal(dim)).astype(np.float32)}


def _store(path: Path, rows: np.ndarray, chunk_rows: int, bits: str = "centred") -> CorpusStore:
    args = (
        _twin_args(rows.shape[1])
        if bits == "centred"
        else {"ranges": _twin_args(rows.shape[1])["ranges"]}
    )
    store = CorpusStore.create(path, rows.shape[1], chunk_rows=chunk_rows, bits=bits, **args)
    if rows.shape[0]:
        store.append(rows)
    return store


def _assert_same_answers(store, fresh, kept_ids, queries, k, *, filter=None, backends=("numba",)):
    """``store`` (with ``filter``) answers like ``fresh``, a store of rows ``kept_ids`` only."""
    for scan, rescore in SCAN_RESCORE:
        for backend in backends:
            if scan.startswith("asymmetric") and backend not in _engine.ASYMMETRIC_BACKENDS:
                continue
            args = {"scan": scan, "rescore": rescore, "backend": backend}
            scores, ids = store.search(queries, k, filter=filter, **args)
            want_scores, want = fresh.search(queries, k, **args)
            np.testing.assert_array_equal(ids, kept_ids[want], err_msg=str(args))
            np.testing.assert_array_equal(scores, want_scores, err_msg=str(args))
    scores, ids = store.exact_search(queries, k, filter=filter)
    want_scores, want = fresh.exact_search(queries, k)
    np.testing.assert_array_equal(ids, kept_ids[want])
    np.testing.assert_array_equal(scores, want_scores)


@pytest.fixture(params=["scan", "gather"])
def route(request, monkeypatch):
    """Both routes of a filtered scan: every row read with a bitmap, or the allowed rows alone."""
    monkeypatch.setattr(engine_search, "GATHER_FRACTION", 0.0 if request.param == "scan" else 1.0)
    return request.param


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 300),
    dim=st.sampled_from([8, 33, 70, 130]),
    chunk_rows=st.sampled_from([16, 64, 1000]),
    delete_fraction=st.floats(0.0, 1.0),
    filter_fraction=st.one_of(st.none(), st.floats(0.0, 1.0)),
    k=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    compact=st.booleans(),
)
def test_deletes_and_filters_answer_like_a_fresh_store_of_the_allowed_rows(
    tmp_path_factory, route, n, dim, chunk_rows, delete_fraction, filter_fraction, k, seed, compact
):
    rng = np.random.default_rng(seed)
    rows = _rows(seed, n, dim)
    queries = _rows(seed + 1, 3, dim)
    tmp = tmp_path_factory.mktemp("mutable")
    store = _store(tmp / "store", rows, chunk_rows)
    deleted = np.flatnonzero(rng.random(n) < delete_fraction)
    assert store.delete(deleted) == deleted.size
    if compact:
        store.compact()
    allowed = np.ones(n, dtype=bool)
    allowed[deleted] = False
    filter = None
    if filter_fraction is not None:
        filter = np.flatnonzero(rng.random(n) < filter_fraction)
        mask = np.zeros(n, dtype=bool)
        mask[filter] = True
        allowed &= mask
    kept = np.flatnonzero(allowed)
    fresh = _store(tmp / "fresh", rows[kept], chunk_rows)
    assert len(store) == n - deleted.size
    _assert_same_answers(store, fresh, kept, queries, k, filter=filter)


@pytest.mark.parametrize("bits", ["centred", "sign"])
def test_every_backend_skips_deleted_and_filtered_rows(tmp_path, route, bits):
    rows, queries = _rows(0, 500, 70), _rows(1, 4, 70)
    store = _store(tmp_path / "store", rows, 64, bits)
    store.delete(np.arange(0, 500, 3))
    filter = np.zeros(500, dtype=bool)
    filter[100:400] = True
    kept = np.flatnonzero(filter & (np.arange(500) % 3 != 0))
    fresh = _store(tmp_path / "fresh", rows[kept], 64, bits)
    backends = ("numba", "numpy", "faiss", "usearch")
    _assert_same_answers(store, fresh, kept, queries, 10, filter=filter, backends=backends)


def test_k_answers_whenever_k_rows_are_allowed(tmp_path, route):
    rows = _rows(0, 200, 33)
    store = _store(tmp_path / "store", rows, 32)
    store.delete(np.arange(0, 200, 2))
    _, ids = store.search(rows[:2], 10, filter=np.arange(0, 40))
    assert ids.shape == (2, 10) and set(ids.reshape(-1)) <= set(range(1, 40, 2))
    _, ids = store.search(rows[:2], 10, filter=[4, 5, 6])
    assert ids.shape == (2, 1) and (ids == 5).all()
    scores, ids = store.search(rows[:2], 10, filter=[])
    assert ids.shape == (2, 0) and scores.shape == (2, 0)


def test_ids_are_never_reused(tmp_path):
    store = _store(tmp_path / "store", _rows(0, 100, 16), 32)
    store.delete(np.arange(60, 100))
    assert store.compact().rows_removed == 40
    np.testing.assert_array_equal(store.append(_rows(1, 5, 16)), np.arange(100, 105))
    assert store.next_id == 105 and len(store) == 65
    reopened = CorpusStore.open(store.path)
    _, ids = reopened.search(_rows(1, 5, 16), 1, rescore="none")
    assert set(ids[:, 0]) <= set(range(60)) | set(range(100, 105))


def test_delete_errors_and_repeats(tmp_path):
    store = _store(tmp_path / "store", _rows(0, 50, 16), 32)
    with pytest.raises(ValueError, match="id 50, which no row of this store ever had"):
        store.delete([3, 50])
    with pytest.raises(ValueError, match="id -1"):
        store.delete(-1)
    with pytest.raises(TypeError, match="integer row ids"):
        store.delete([1.5])
    with pytest.raises(ValueError, match=r"shape \(50,\)"):
        store.delete(np.ones(49, dtype=bool))
    assert len(store) == 50 and store.deleted_rows == 0  # nothing of a refused delete
    assert store.delete([3, 4, 4]) == 2
    assert store.delete([3, 4]) == 0
    assert store.delete(np.arange(50) < 2) == 2
    assert len(store) == 46 and store.deleted_rows == 4
    store.compact()
    assert store.delete([3]) == 0  # deleted and compacted away: still harmless
    with pytest.raises(ValueError, match="filter holds id 77"):
        store.search(_rows(1, 1, 16), filter=[77])


def test_readers_see_deletes_after_refresh(tmp_path):
    rows = _rows(0, 80, 16)
    writer = _store(tmp_path / "store", rows, 32)
    reader = CorpusStore.open(writer.path)
    writer.delete(np.arange(40))
    assert len(reader) == 80
    assert reader.refresh() == 40
    _, ids = reader.search(rows[:5], 80)
    assert ids.min() >= 40


def test_compaction_returns_space_keeps_ids_and_answers(tmp_path):
    rows, queries = _rows(0, 1000, 64), _rows(1, 5, 64)
    store = _store(tmp_path / "store", rows, 128)
    store.delete(np.arange(0, 1000, 2))
    store.delete(np.arange(128, 256))  # a whole chunk goes
    before = [store.search(queries, 10, scan=scan) for scan in _engine.SCANS]
    exact_before = store.exact_search(queries, 10)
    report = store.compact(progress=True)
    assert report.rows_removed == 564 and report.bytes_returned > 0
    assert report.bytes_after < 0.5 * report.bytes_before
    for scan, (scores, ids) in zip(_engine.SCANS, before):
        after = store.search(queries, 10, scan=scan)
        np.testing.assert_array_equal(after[1], ids)
        np.testing.assert_array_equal(after[0], scores)
    np.testing.assert_array_equal(store.exact_search(queries, 10)[1], exact_before[1])
    names = sorted(os.listdir(store.path / "chunks"))
    assert "000001.g1.bits" not in names and not any(n.startswith("deleted-") for n in names)
    assert all(".g1." in n for n in names if not n.startswith("000007"))
    reopened = CorpusStore.open(store.path)
    assert reopened.verify() > 0 and len(reopened) == 436 and reopened.deleted_rows == 0
    assert store.compact().rows_removed == 0


def test_a_reader_keeps_searching_its_snapshot_during_compaction(tmp_path):
    rows, queries = _rows(0, 600, 32), _rows(1, 3, 32)
    writer = _store(tmp_path / "store", rows, 100)
    writer.delete(np.arange(0, 600, 4))
    reader = CorpusStore.open(writer.path)
    want = reader.search(queries, 10)
    errors = []

    def search_repeatedly():
        try:
            for _ in range(30):
                got = reader.search(queries, 10)
                np.testing.assert_array_equal(got[1], want[1])
                CorpusStore.open(writer.path).search(queries, 10)  # a reader opening meanwhile
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=search_repeatedly)
    thread.start()
    writer.compact()
    thread.join()
    assert not errors, errors
    assert reader.refresh() == 450
    np.testing.assert_array_equal(reader.search(queries, 10)[1], want[1])


def test_a_damaged_list_of_deleted_ids_is_reported(tmp_path):
    store = _store(tmp_path / "store", _rows(0, 50, 16), 32)
    store.delete([1, 2, 3])
    store.close()
    listed = store.path / deleted_file(store.manifest.deleted.generation)
    data = bytearray(listed.read_bytes())
    data[0] ^= 1
    listed.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match="deleted-000001.ids fails its checksum"):
        CorpusStore.open(store.path)
    listed.unlink()
    with pytest.raises(StoreCorruptedError, match="deleted-000001.ids is missing"):
        CorpusStore.open(store.path)


def test_a_damaged_ids_file_of_a_compacted_chunk_is_reported(tmp_path):
    store = _store(tmp_path / "store", _rows(0, 50, 16), 32)
    store.delete([1, 2, 3])
    store.compact()
    store.close()
    ids_file = store.path / "chunks/000000.g1.ids"
    ids = np.fromfile(ids_file, dtype="<i8")
    ids[[2, 3]] = ids[[3, 2]]
    ids.tofile(ids_file)
    with pytest.raises(StoreCorruptedError, match="000000.g1.ids does not hold ascending ids"):
        CorpusStore.open(store.path)
    with pytest.raises(StoreCorruptedError, match="000000.g1.ids"):
        CorpusStore.open(store.path, bits_in_memory=True).verify()


# -- crash safety ---------------------------------------------------------------------------

DELETE_AND_COMPACT_FOREVER = """
    import sys

    import numpy as np

    from fastquant import CorpusStore

    store = CorpusStore.open(sys.argv[1])
    i = 0
    while True:
        ids = np.random.default_rng(i).choice(store.next_id, 7, replace=False)
        store.delete(ids)
        print(f"deleted {i}", flush=True)
        if i % 2:
            store.compact()
            print(f"compacted {i}", flush=True)
        i += 1
"""


def _deleted_after(acks: int, next_id: int) -> np.ndarray:
    """Ids deleted by the first ``acks`` deletes of the child."""
    parts = [np.random.default_rng(i).choice(next_id, 7, replace=False) for i in range(acks)]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)


@pytest.mark.parametrize("kill_after", [1, 4, 7, 10])
@pytest.mark.parametrize("delay_s", [0.0, 0.003, 0.02])
def test_sigkill_during_deletes_and_compaction_leaves_a_store_that_answers(
    tmp_path, kill_after, delay_s
):
    rows, queries = _rows(0, 3000, 48), _rows(1, 4, 48)
    store = _store(tmp_path / "store", rows, 256)
    store.close()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DELETE_AND_COMPACT_FOREVER), str(store.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(CHILD_TIMEOUT_S, child.kill)
    watchdog.start()
    try:
        lines = [child.stdout.readline().strip() for _ in range(kill_after)]
        assert all(lines), child.stderr.read()
        threading.Event().wait(delay_s)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        lines += child.stdout.read().splitlines()
    finally:
        watchdog.cancel()
    acked = sum(line.startswith("deleted") for line in lines)

    survivor = CorpusStore.open(store.path)
    survivor.verify()
    live = np.setdiff1d(np.arange(3000), survivor_deleted := _live_complement(survivor))
    assert any(
        np.array_equal(survivor_deleted, _deleted_after(done, 3000)) for done in (acked, acked + 1)
    )
    fresh = _store(tmp_path / "fresh", rows[live], 256)
    _assert_same_answers(survivor, fresh, live, queries, 10)
    survivor.delete([int(live[0])])  # the next writer clears what the child left
    survivor.compact()
    assert not [n for n in os.listdir(store.path / "chunks") if n.startswith("deleted-")]
    CorpusStore.open(store.path).verify()


def _live_complement(store: CorpusStore) -> np.ndarray:
    """Ids of ``store`` below ``next_id`` that no search may return (deleted)."""
    corpus = store.snapshot.corpus
    live = np.concatenate(
        [corpus.chunk_ids(c)[_allowed(corpus, c)] for c in range(len(corpus.offsets) - 1)]
    )
    return np.setdiff1d(np.arange(store.next_id), live)


def _allowed(corpus, c: int) -> np.ndarray:
    bitmap = corpus.chunk_allowed(c)
    n = corpus.chunk_rows(c)
    if bitmap is None:
        return np.ones(n, dtype=bool)
    return np.unpackbits(bitmap, count=n, bitorder="little").view(bool)


def test_a_manifest_whose_next_id_skips_past_the_last_chunk_is_refused(tmp_path):
    import json

    from fastquant.store.checked_json import seal

    store = _store(tmp_path / "store", _rows(0, 40, 16), 1000)
    store.close()
    file = store.path / "manifest.json"
    body = json.loads(file.read_text())
    del body["json_crc32"]
    body["next_id"] = 45  # appends would start a new chunk after a partial one
    file.write_bytes(seal(body))
    with pytest.raises(StoreCorruptedError, match="next_id 45 does not follow"):
        CorpusStore.open(store.path)
