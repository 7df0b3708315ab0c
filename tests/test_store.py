"""CorpusStore: lifecycle, bad input, integrity checks, crash safety under SIGKILL, concurrency.

Stored rows are read back through the documented raw chunk format (``np.memmap`` of
``chunks/NNNNNN.bits``, ``.codes`` and ``.factors``) and compared with ``quantize_embeddings`` and
the NumPy reference of centred bits.
Crashes and competing processes are real child processes started with ``sys.executable``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastquant import (
    CorpusStore,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
    StoreVersionError,
    StoreWriteError,
    quantize_embeddings,
)
from naive import naive_centred_codes, naive_hamming_topk
from store_fuzz import reseal

DIM = 20
CHUNK_ROWS = 7
ROWS = 30  # five chunks of 7 rows, the last one holding 2

#: The crash and concurrency tests: batches of 64-d rows, chunks that batches straddle.
BATCH, CRASH_DIM, CRASH_CHUNK_ROWS = 50, 64, 120
CHILD_TIMEOUT_S = 60


def _embeddings(seed: int, n: int, dim: int = DIM) -> np.ndarray:
    """``(n, dim) float32`` standard normal rows, the same for the same seed."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _fixed_ranges(dim: int = DIM) -> np.ndarray:
    """``(2, dim) float32`` int8 ranges ``[-2.5, 2.5]`` in every dimension."""
    return np.vstack([np.full(dim, -2.5, np.float32), np.full(dim, 2.5, np.float32)])


def _batch(i: int) -> np.ndarray:
    """Batch ``i`` appended by the child processes; the code is repeated in their scripts."""
    return np.random.default_rng(i).standard_normal((BATCH, CRASH_DIM)).astype(np.float32)


def _empty_store(path: Path, **create_args) -> CorpusStore:
    """A new ``DIM``-d store; chunks of ``CHUNK_ROWS`` and fixed ranges unless told otherwise."""
    create_args.setdefault("ranges", _fixed_ranges())
    create_args.setdefault("chunk_rows", CHUNK_ROWS)
    return CorpusStore.create(path, DIM, **create_args)


def _filled_store(tmp_path: Path, **create_args) -> tuple[CorpusStore, np.ndarray]:
    """A store of ``ROWS`` rows of ``DIM``-d over chunks of ``CHUNK_ROWS``, and those rows."""
    store = _empty_store(tmp_path / "store", **create_args)
    corpus_f32 = _embeddings(0, ROWS)
    store.append(corpus_f32)
    return store, corpus_f32


def _stored_rows(
    path: Path, rows: int, dim: int, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The first ``rows`` rows of the store at ``path``, read from its raw chunk files.

    Returns ``bits (rows, ceil(dim / 8)) uint8``, ``codes (rows, dim) int8`` and ``factors (rows,
    2) uint16`` (None for a store of sign bits).
    """
    width = (dim + 7) // 8
    bits, codes = [np.empty((0, width), np.uint8)], [np.empty((0, dim), np.int8)]
    factors = [np.empty((0, 2), np.uint16)]
    for index, start in enumerate(range(0, rows, chunk_rows)):
        n = min(chunk_rows, rows - start)
        chunk = path / "chunks" / f"{index:06d}"
        bits.append(np.memmap(f"{chunk}.bits", dtype=np.uint8, mode="r", shape=(n, width)).copy())
        codes.append(np.memmap(f"{chunk}.codes", dtype=np.int8, mode="r", shape=(n, dim)).copy())
        if Path(f"{chunk}.factors").exists():
            factors.append(np.memmap(f"{chunk}.factors", np.uint16, mode="r", shape=(n, 2)).copy())
    stored_factors = np.concatenate(factors) if len(factors) > 1 else None
    return np.concatenate(bits), np.concatenate(codes), stored_factors


def _assert_holds(store: CorpusStore, corpus_f32: np.ndarray) -> None:
    """``store`` holds exactly ``corpus_f32``'s rows: int8 codes as sentence-transformers makes
    them, bits (and factors) as the NumPy references make them for the store's kind of bits."""
    assert len(store) == len(corpus_f32)
    bits, codes, factors = _stored_rows(store.path, len(corpus_f32), store.dim, store.chunk_rows)
    if store.manifest.centred:
        expected_bits, expected_factors = naive_centred_codes(
            corpus_f32, store.snapshot.corpus.centre
        )
        np.testing.assert_array_equal(factors, expected_factors)
    else:
        expected_bits = quantize_embeddings(corpus_f32, "ubinary")
        assert factors is None
    np.testing.assert_array_equal(bits, expected_bits)
    expected_codes = quantize_embeddings(corpus_f32, "int8", ranges=store.calibration.ranges)
    np.testing.assert_array_equal(codes, expected_codes)


def _chunk_files(path: Path) -> list[str]:
    return sorted(file.name for file in (path / "chunks").iterdir())


#: Files of each chunk of a (default, centred) store.
CHUNK_KINDS = ("bits", "codes", "factors")


def _expected_chunk_files(rows: int, chunk_rows: int) -> list[str]:
    count = -(-rows // chunk_rows)
    return sorted(f"{i:06d}.{kind}" for i in range(count) for kind in CHUNK_KINDS)


def _row_bytes(dim: int) -> int:
    """Bytes per row of a centred store: packed bits, int8 codes, two bfloat16 factors."""
    return (dim + 7) // 8 + dim + 4


def _state(path: Path) -> dict[str, bytes]:
    """Every file of the store (except the writer lock) and its bytes."""
    return {
        str(file.relative_to(path)): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file() and file.name != "writer.lock"
    }


def _spawn(script: str, *args: object) -> subprocess.Popen:
    """Run ``script`` in a new Python; killed after ``CHILD_TIMEOUT_S`` so no test can hang."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(CHILD_TIMEOUT_S, process.kill)
    watchdog.daemon = True
    watchdog.start()
    return process


def _read_line(process: subprocess.Popen) -> str:
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise AssertionError(f"child exited without output; stderr:\n{process.stderr.read()}")
    return line.strip()


# -- create, open, append ---------------------------------------------------------------------


def test_create_makes_an_empty_store(tmp_path):
    store = CorpusStore.create(tmp_path / "store", DIM, ranges=_fixed_ranges(), chunk_rows=7)
    assert (len(store), store.dim, store.chunk_rows) == (0, DIM, CHUNK_ROWS)
    assert store.verify() == 0
    scores, ids = store.search(_embeddings(1, 2), k=5)
    assert scores.shape == ids.shape == (2, 0)
    reopened = CorpusStore.open(tmp_path / "store")
    assert (len(reopened), reopened.dim, reopened.chunk_rows) == (0, DIM, CHUNK_ROWS)


def test_create_accepts_an_existing_empty_directory(tmp_path):
    (tmp_path / "store").mkdir()
    store = CorpusStore.create(tmp_path / "store", DIM, ranges=_fixed_ranges())
    assert len(store) == 0 and (tmp_path / "store" / "manifest.json").is_file()


def test_append_returns_consecutive_ids_from_the_old_length(tmp_path):
    store = _empty_store(tmp_path / "store")
    for start, n in ((0, 10), (10, 25), (35, 1), (36, 7)):
        ids = store.append(_embeddings(start, n))
        assert ids.dtype == np.int64
        np.testing.assert_array_equal(ids, np.arange(start, start + n))
        assert len(store) == start + n


def test_rows_spread_over_chunks_equal_quantize_embeddings(tmp_path):
    store, corpus_f32 = _filled_store(tmp_path)
    more_f32 = _embeddings(1, 11)
    store.append(more_f32)
    _assert_holds(store, np.concatenate([corpus_f32, more_f32]))
    assert _chunk_files(store.path) == _expected_chunk_files(ROWS + 11, CHUNK_ROWS)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_non_float32_and_non_contiguous_batches_are_stored_like_float32(tmp_path, dtype):
    store = _empty_store(tmp_path / "store")
    wide_f32 = _embeddings(0, 24, 2 * DIM)
    fortran, strided = np.asfortranarray(wide_f32[:12, :DIM]), wide_f32[12:, ::2]
    batches = [fortran.astype(dtype), strided.astype(dtype)]
    for batch in batches:
        store.append(batch)
    stored = np.concatenate(batches)
    bits, codes, factors = _stored_rows(store.path, 24, DIM, CHUNK_ROWS)
    expected_bits, expected_factors = naive_centred_codes(
        stored.astype(np.float64), store.snapshot.corpus.centre
    )
    np.testing.assert_array_equal(bits, expected_bits)
    np.testing.assert_array_equal(factors, expected_factors)
    expected_codes = quantize_embeddings(stored, "int8", ranges=_fixed_ranges())
    np.testing.assert_array_equal(codes, expected_codes)


def test_reopen_sees_the_same_rows_and_search_results(tmp_path):
    store, corpus_f32 = _filled_store(tmp_path)
    query_f32 = _embeddings(7, 3)
    before = store.search(query_f32, k=6)
    store.close()
    reopened = CorpusStore.open(tmp_path / "store")
    _assert_holds(reopened, corpus_f32)
    after = reopened.search(query_f32, k=6)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])


@pytest.mark.parametrize(
    "scan", ["asymmetric", "asymmetric-exact", "hamming", "hamming+asymmetric"]
)
@pytest.mark.parametrize("rescore", ["int8", "bits", "none"])
def test_search_does_not_depend_on_the_chunk_size(tmp_path, scan, rescore):
    corpus_f32, query_f32 = _embeddings(0, 100), _embeddings(1, 4)
    small = _empty_store(tmp_path / "small")
    whole = _empty_store(tmp_path / "whole", chunk_rows=1000)
    small.append(corpus_f32)
    whole.append(corpus_f32)
    small_scores, small_ids = small.search(query_f32, k=9, scan=scan, rescore=rescore)
    whole_scores, whole_ids = whole.search(query_f32, k=9, scan=scan, rescore=rescore)
    np.testing.assert_array_equal(small_ids, whole_ids)
    np.testing.assert_array_equal(small_scores, whole_scores)
    if (scan, rescore) == ("hamming", "none"):  # the fixed ranges' midpoint centre is 0
        distances, ids = naive_hamming_topk(
            quantize_embeddings(corpus_f32, "ubinary"), quantize_embeddings(query_f32, "ubinary"), 9
        )
        np.testing.assert_array_equal(small_ids, ids)
        np.testing.assert_array_equal(small_scores, DIM - 2 * distances)


def test_bits_in_memory_gives_the_same_results(tmp_path):
    store, _ = _filled_store(tmp_path)
    in_memory = CorpusStore.open(store.path, bits_in_memory=True)
    query_f32 = _embeddings(1, 3)
    for rescore in ("int8", "bits", "none"):
        expected = store.search(query_f32, k=8, rescore=rescore)
        got = in_memory.search(query_f32, k=8, rescore=rescore)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[0], expected[0])
    store.append(_embeddings(2, 9))
    assert in_memory.refresh() == ROWS + 9
    expected = store.search(query_f32, k=8)
    np.testing.assert_array_equal(in_memory.search(query_f32, k=8)[1], expected[1])


def test_exact_search_covers_every_chunk(tmp_path):
    store, _ = _filled_store(tmp_path)
    scores, ids = store.exact_search(_embeddings(1, 2), k=100)
    assert scores.shape == ids.shape == (2, ROWS)
    assert all(sorted(row) == list(range(ROWS)) for row in ids)


def test_calibration_from_ranges(tmp_path):
    store, _ = _filled_store(tmp_path, ranges=_fixed_ranges())
    np.testing.assert_array_equal(store.calibration.ranges, _fixed_ranges())
    assert "ranges" in store.calibration_source


def test_calibration_from_calibration_embeddings(tmp_path):
    sample_f32 = _embeddings(5, 40)
    store, corpus_f32 = _filled_store(tmp_path, ranges=None, calibration_embeddings=sample_f32)
    expected = np.vstack([sample_f32.min(axis=0), sample_f32.max(axis=0)])
    np.testing.assert_array_equal(store.calibration.ranges, expected)
    assert "calibration_embeddings" in store.calibration_source
    _, codes, _ = _stored_rows(store.path, ROWS, DIM, CHUNK_ROWS)
    expected_codes = quantize_embeddings(corpus_f32, "int8", calibration_embeddings=sample_f32)
    np.testing.assert_array_equal(codes, expected_codes)


def test_calibration_from_the_first_append(tmp_path):
    store = _empty_store(tmp_path / "store", ranges=None)
    assert store.calibration is None and store.calibration_source is None
    first_f32, second_f32 = _embeddings(0, 12), 3 * _embeddings(1, 9)
    store.append(first_f32)
    np.testing.assert_array_equal(
        store.calibration.ranges, np.vstack([first_f32.min(axis=0), first_f32.max(axis=0)])
    )
    assert "first append" in store.calibration_source
    store.append(second_f32)  # saturates in the first batch's ranges, which stay
    _, codes, _ = _stored_rows(store.path, 21, DIM, CHUNK_ROWS)
    np.testing.assert_array_equal(codes[:12], quantize_embeddings(first_f32, "int8"))
    reopened = CorpusStore.open(tmp_path / "store")
    assert reopened.calibration_source == store.calibration_source
    _assert_holds(reopened, np.concatenate([first_f32, second_f32]))


def test_first_append_of_a_single_row_without_ranges_raises(tmp_path):
    store = _empty_store(tmp_path / "store", ranges=None)
    state = _state(store.path)
    with pytest.raises(ValueError, match="single embedding"):
        store.append(_embeddings(0, 1))
    assert len(store) == 0 and store.calibration is None
    assert _state(store.path) == state
    store.append(_embeddings(0, 2))
    assert len(store) == 2


@pytest.mark.parametrize(
    "dim, args, problem",
    [
        pytest.param(0, {}, "dim", id="dim-zero"),
        pytest.param(-4, {}, "dim", id="dim-negative"),
        pytest.param(DIM, {"chunk_rows": 0}, "chunk_rows", id="chunk-rows-zero"),
        pytest.param(DIM, {"chunk_rows": -1}, "chunk_rows", id="chunk-rows-negative"),
        pytest.param(
            DIM,
            {"ranges": _fixed_ranges(), "calibration_embeddings": _embeddings(0, 5)},
            "not both",
            id="ranges-and-calibration-embeddings",
        ),
        pytest.param(DIM, {"ranges": _fixed_ranges(DIM + 1)}, "dimension", id="ranges-wrong-dim"),
    ],
)
def test_create_rejects_bad_arguments_and_leaves_nothing(tmp_path, dim, args, problem):
    with pytest.raises(ValueError, match=problem):
        CorpusStore.create(tmp_path / "store", dim, **args)
    assert list(tmp_path.iterdir()) == []


def test_create_refuses_a_non_empty_directory_or_a_file(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        CorpusStore.create(tmp_path / "store", DIM)
    assert os.listdir(tmp_path / "store") == ["notes.txt"]
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError):
        CorpusStore.create(tmp_path / "file", DIM)
    assert (tmp_path / "file").read_text() == "mine"


def test_create_refuses_an_existing_store(tmp_path):
    _, corpus_f32 = _filled_store(tmp_path)
    with pytest.raises(FileExistsError):
        CorpusStore.create(tmp_path / "store", DIM)
    _assert_holds(CorpusStore.open(tmp_path / "store"), corpus_f32)


# -- bad input ------------------------------------------------------------------------------


def _with_value(value: float) -> np.ndarray:
    batch = _embeddings(9, 4)
    batch[2, 5] = value
    return batch


BAD_BATCHES = [
    pytest.param(lambda: _with_value(np.nan), "NaN", id="nan"),
    pytest.param(lambda: _with_value(np.inf), "Inf", id="inf"),
    pytest.param(lambda: _with_value(-np.inf), "Inf", id="minus-inf"),
    pytest.param(lambda: _embeddings(9, 4, DIM + 1), "dimension", id="wrong-dim"),
    pytest.param(lambda: np.ones((4, DIM), np.int64), "dtype", id="int-dtype"),
    pytest.param(lambda: _embeddings(9, 6).reshape(2, 3, DIM), "2-D", id="3-d"),
    pytest.param(lambda: _embeddings(9, 1)[0], "2-D", id="1-d-row"),
    pytest.param(lambda: np.empty((0, DIM), np.float32), "empty", id="empty"),
    pytest.param(lambda: ["a", "b"], "float", id="list-of-strings"),
    pytest.param(lambda: [["a"] * DIM] * 2, "float", id="rows-of-strings"),
]


@pytest.mark.parametrize("make_batch, problem", BAD_BATCHES)
def test_bad_append_leaves_the_store_unchanged(tmp_path, make_batch, problem):
    store, _ = _filled_store(tmp_path)
    manifest_bytes = (store.path / "manifest.json").read_bytes()
    state = _state(store.path)
    checked = store.verify()
    with pytest.raises((ValueError, TypeError), match=problem):
        store.append(make_batch())
    assert len(store) == ROWS
    assert (store.path / "manifest.json").read_bytes() == manifest_bytes
    assert _state(store.path) == state
    assert store.verify() == checked
    assert len(CorpusStore.open(store.path)) == ROWS
    np.testing.assert_array_equal(store.append(_embeddings(3, 2)), [ROWS, ROWS + 1])


@pytest.mark.parametrize("make_batch, problem", BAD_BATCHES)
def test_bad_first_append_writes_no_calibration(tmp_path, make_batch, problem):
    store = _empty_store(tmp_path / "store", ranges=None)
    state = _state(store.path)
    with pytest.raises((ValueError, TypeError), match=problem):
        store.append(make_batch())
    assert _state(store.path) == state
    assert store.calibration is None and not (store.path / "calibration.npy").exists()


@pytest.mark.parametrize(
    "query, args, error, problem",
    [
        pytest.param(None, {"k": 0}, ValueError, "k must be positive", id="k-zero"),
        pytest.param(None, {"k": -1}, ValueError, "k must be positive", id="k-negative"),
        pytest.param(None, {"k": 1.5}, TypeError, "integer", id="k-float"),
        pytest.param(None, {"k": True}, TypeError, "integer", id="k-bool"),
        pytest.param(_embeddings(1, 2, DIM + 3), {}, ValueError, "dimension", id="wrong-dim"),
        pytest.param(np.full((1, DIM), np.nan, np.float32), {}, ValueError, "NaN", id="nan"),
        pytest.param(np.ones((1, DIM), np.int32), {}, TypeError, "dtype", id="int-dtype"),
        pytest.param(None, {"rescore": "bogus"}, ValueError, "rescore", id="rescore-bogus"),
        pytest.param(
            None, {"rescore_multiplier": 0}, ValueError, "rescore_multiplier", id="multiplier-zero"
        ),
    ],
)
def test_bad_search_arguments_raise(tmp_path, query, args, error, problem):
    store, _ = _filled_store(tmp_path)
    query = _embeddings(1, 2) if query is None else query
    with pytest.raises(error, match=problem):
        store.search(query, **args)


@pytest.mark.parametrize("k, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_bad_exact_search_k_raises(tmp_path, k, error):
    store, _ = _filled_store(tmp_path)
    with pytest.raises(error, match="k must"):
        store.exact_search(_embeddings(1, 2), k=k)


def test_k_larger_than_the_store_returns_every_row(tmp_path):
    store, _ = _filled_store(tmp_path)
    scores, ids = store.search(_embeddings(1, 3), k=ROWS + 50)
    assert scores.shape == ids.shape == (3, ROWS)
    assert all(sorted(row) == list(range(ROWS)) for row in ids)


# -- integrity -----------------------------------------------------------------------------


def test_verify_returns_the_committed_bytes_checked(tmp_path):
    store, _ = _filled_store(tmp_path)
    assert store.verify() == ROWS * _row_bytes(DIM)


@pytest.mark.parametrize("name", ["000000.bits", "000002.codes", "000004.bits", "000004.codes"])
def test_verify_names_a_chunk_file_with_a_flipped_byte(tmp_path, name):
    store, _ = _filled_store(tmp_path)
    file = store.path / "chunks" / name
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match="checksum") as error:
        store.verify()
    assert str(file) in str(error.value)


def test_verify_ignores_bytes_past_the_committed_rows(tmp_path):
    store, _ = _filled_store(tmp_path)
    checked = store.verify()
    with open(store.path / "chunks" / "000004.codes", "ab") as handle:
        handle.write(b"\x7f" * 3 * DIM)
    assert store.verify() == checked


@pytest.mark.parametrize("name", ["000001.bits", "000004.bits", "000004.codes"])
def test_open_reports_a_truncated_chunk_file(tmp_path, name):
    store, _ = _filled_store(tmp_path)
    file = store.path / "chunks" / name
    os.truncate(file, file.stat().st_size - 1)
    with pytest.raises(StoreCorruptedError, match="truncated") as error:
        CorpusStore.open(store.path)
    assert str(file) in str(error.value)
    with pytest.raises(StoreCorruptedError, match="truncated") as error:
        store.verify()
    assert str(file) in str(error.value)


@pytest.mark.parametrize("name", ["chunks/000000.codes", "chunks/000003.bits", "calibration.npy"])
def test_open_reports_a_missing_file(tmp_path, name):
    store, _ = _filled_store(tmp_path)
    file = store.path / name
    file.unlink()
    with pytest.raises(StoreCorruptedError, match="missing") as error:
        CorpusStore.open(store.path)
    assert str(file) in str(error.value)
    with pytest.raises(StoreCorruptedError, match="missing") as error:
        store.verify()
    assert str(file) in str(error.value)


def test_open_and_verify_report_an_edited_calibration(tmp_path):
    store, _ = _filled_store(tmp_path)
    file = store.path / "calibration.npy"
    edited = _fixed_ranges()
    edited[1, 3] = 2.0
    np.save(file, edited)
    for check in (lambda: CorpusStore.open(store.path), store.verify):
        with pytest.raises(StoreCorruptedError) as error:
            check()
        assert str(file) in str(error.value)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2]", id="a-list"),
        pytest.param(b'{"format": "fastquant-corpus-store"}', id="keys-missing"),
        pytest.param(b"\xff\xfe\x00\x01garbage", id="not-utf8"),
    ],
)
def test_open_reports_a_garbage_manifest(tmp_path, garbage):
    store, _ = _filled_store(tmp_path)
    (store.path / "manifest.json").write_bytes(garbage)
    with pytest.raises(StoreCorruptedError, match="manifest.json"):
        CorpusStore.open(store.path)


def _write_manifest(path: Path, body: dict) -> None:
    """Write ``body`` as the manifest with a matching ``json_crc32`` (as documented), so that
    the check that follows is the one a test is about, not the checksum."""
    (path / "manifest.json").write_text(json.dumps(reseal(body)))


def _edit_manifest(path: Path, **changes) -> None:
    body = json.loads((path / "manifest.json").read_text())
    body.update(changes)
    _write_manifest(path, body)


def test_open_reports_a_manifest_whose_row_count_disagrees(tmp_path):
    store, _ = _filled_store(tmp_path)
    _edit_manifest(store.path, rows=ROWS + 1)
    with pytest.raises(StoreCorruptedError, match="manifest.json"):
        CorpusStore.open(store.path)


def test_open_refuses_a_newer_format_and_says_to_upgrade(tmp_path):
    store, _ = _filled_store(tmp_path)
    _edit_manifest(store.path, format_version=99)
    with pytest.raises(StoreVersionError, match="upgrade") as error:
        CorpusStore.open(store.path)
    assert "99" in str(error.value)
    assert not isinstance(error.value, StoreCorruptedError)


def test_open_a_directory_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match="manifest.json") as error:
        CorpusStore.open(tmp_path / "empty")
    assert isinstance(error.value, FileNotFoundError)


def test_open_a_path_that_does_not_exist(tmp_path):
    with pytest.raises(StoreNotFoundError, match="does not exist") as error:
        CorpusStore.open(tmp_path / "nowhere")
    assert isinstance(error.value, FileNotFoundError)


# -- crash safety ---------------------------------------------------------------------------

APPEND_FOREVER = """
    import sys

    import numpy as np

    from fastquant import CorpusStore

    store = CorpusStore.open(sys.argv[1])
    batch, dim = int(sys.argv[2]), int(sys.argv[3])
    i = len(store) // batch
    while True:
        store.append(np.random.default_rng(i).standard_normal((batch, dim)).astype(np.float32))
        print(f"acked {i}", flush=True)
        i += 1
"""


def _crash_store(tmp_path: Path) -> CorpusStore:
    return CorpusStore.create(
        tmp_path / "store", CRASH_DIM, ranges=_fixed_ranges(CRASH_DIM), chunk_rows=CRASH_CHUNK_ROWS
    )


def _random_kill_points(count: int) -> list:
    rng = np.random.default_rng(2024)
    points = [(int(rng.integers(3, 15)), float(rng.uniform(0.0, 0.04))) for _ in range(count)]
    return [
        pytest.param(acks, delay, id=f"random-{acks}-acks-{delay * 1000:.0f}ms")
        for acks, delay in points
    ]


@pytest.mark.parametrize(
    "acks_before_kill, delay_s",
    [
        pytest.param(5, 0.0, id="after-5-acks"),
        pytest.param(12, 0.0, id="after-12-acks"),
        pytest.param(20, 0.0, id="after-20-acks"),
        *_random_kill_points(3),
    ],
)
def test_sigkill_during_appends_keeps_every_acknowledged_batch(tmp_path, acks_before_kill, delay_s):
    store = _crash_store(tmp_path)
    child = _spawn(APPEND_FOREVER, store.path, BATCH, CRASH_DIM)
    lines = [_read_line(child) for _ in range(acks_before_kill)]
    time.sleep(delay_s)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    lines += child.stdout.read().splitlines()
    assert lines == [f"acked {i}" for i in range(len(lines))]
    acked = len(lines)

    survivor = CorpusStore.open(store.path)
    committed = len(survivor)
    assert committed % BATCH == 0
    assert acked * BATCH <= committed <= (acked + 1) * BATCH
    batches = [_batch(i) for i in range(committed // BATCH)]
    _assert_holds(survivor, np.concatenate(batches))
    assert survivor.verify() == committed * _row_bytes(CRASH_DIM)
    assert survivor.search(_batch(999)[:2], k=3)[1].shape == (2, 3)

    # the kernel released the dead child's lock: this append takes it and clears its leftovers
    batches.append(_batch(len(batches)))
    ids = survivor.append(batches[-1])
    np.testing.assert_array_equal(ids, np.arange(committed, committed + BATCH))
    survivor.verify()
    _assert_holds(CorpusStore.open(store.path), np.concatenate(batches))
    assert _chunk_files(store.path) == _expected_chunk_files(committed + BATCH, CRASH_CHUNK_ROWS)
    assert not list(store.path.glob(".*tmp*"))
    survivor.close()


# -- concurrency ------------------------------------------------------------------------------


def test_second_writer_is_refused_until_the_first_closes(tmp_path):
    first, corpus_f32 = _filled_store(tmp_path)
    second = CorpusStore.open(first.path)
    refused_f32, first_f32, second_f32 = _embeddings(3, 4), _embeddings(4, 5), _embeddings(5, 6)
    with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
        second.append(refused_f32)
    assert len(second) == ROWS and second.verify() > 0
    first.append(first_f32)
    first.close()
    # the second writer appends after the rows the first one added since it opened
    np.testing.assert_array_equal(second.append(second_f32), np.arange(ROWS + 5, ROWS + 11))
    second.close()
    assert first.refresh() == ROWS + 11
    _assert_holds(first, np.concatenate([corpus_f32, first_f32, second_f32]))


def test_a_context_manager_releases_the_lock(tmp_path):
    first, _ = _filled_store(tmp_path)
    first.close()
    with CorpusStore.open(first.path) as store:
        store.append(_embeddings(4, 3))
    with CorpusStore.open(first.path) as store:
        ids = store.append(_embeddings(5, 3))
    np.testing.assert_array_equal(ids, np.arange(ROWS + 3, ROWS + 6))


HOLD_LOCK = """
    import sys
    import time

    import numpy as np

    from fastquant import CorpusStore

    store = CorpusStore.open(sys.argv[1])
    batch, dim = int(sys.argv[2]), int(sys.argv[3])
    store.append(np.random.default_rng(0).standard_normal((batch, dim)).astype(np.float32))
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_writer_in_another_process_holds_the_lock(tmp_path):
    store = _crash_store(tmp_path)
    child = _spawn(HOLD_LOCK, store.path, BATCH, CRASH_DIM)
    try:
        assert _read_line(child) == "locked"
        with pytest.raises(StoreLockedError, match=f"pid {child.pid}"):
            store.append(_batch(1))
        assert store.refresh() == BATCH  # reading needs no lock
    finally:
        child.kill()
        child.wait()
    np.testing.assert_array_equal(store.append(_batch(1)), np.arange(BATCH, 2 * BATCH))
    _assert_holds(store, np.concatenate([_batch(0), _batch(1)]))
    store.close()


def test_a_reader_keeps_its_snapshot_until_refresh(tmp_path):
    writer, corpus_f32 = _filled_store(tmp_path)
    reader = CorpusStore.open(writer.path)
    query_f32 = _embeddings(8, 3)
    scores, ids = reader.search(query_f32, k=5)
    more_f32 = _embeddings(6, 12)
    writer.append(more_f32)
    assert len(reader) == ROWS
    np.testing.assert_array_equal(reader.search(query_f32, k=5)[1], ids)
    np.testing.assert_array_equal(reader.search(query_f32, k=5)[0], scores)
    assert set(reader.exact_search(query_f32, k=100)[1][0]) == set(range(ROWS))

    assert reader.refresh() == ROWS + 12 == len(reader)
    assert set(reader.exact_search(query_f32, k=100)[1][0]) == set(range(ROWS + 12))
    np.testing.assert_array_equal(reader.search(query_f32, k=5)[1], writer.search(query_f32, 5)[1])
    _assert_holds(reader, np.concatenate([corpus_f32, more_f32]))
    assert reader.refresh() == ROWS + 12


def test_a_reader_of_an_uncalibrated_store_gets_the_ranges_on_refresh(tmp_path):
    writer = _empty_store(tmp_path / "store", ranges=None)
    reader = CorpusStore.open(writer.path)
    corpus_f32 = _embeddings(0, 10)
    writer.append(corpus_f32)
    assert reader.calibration is None and len(reader) == 0
    assert reader.refresh() == 10
    np.testing.assert_array_equal(reader.calibration.ranges, writer.calibration.ranges)
    assert reader.calibration_source == writer.calibration_source
    query_f32 = corpus_f32[:2]
    np.testing.assert_array_equal(reader.search(query_f32, k=4)[1], writer.search(query_f32, 4)[1])


READ_WHILE_WRITTEN = """
    import sys
    import time

    import numpy as np

    from fastquant import CorpusStore

    path, batch, dim, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    query = np.random.default_rng(12345).standard_normal((2, dim)).astype(np.float32)
    follower = CorpusStore.open(path)
    print("ready", flush=True)
    rounds, lengths = 0, set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        fresh = CorpusStore.open(path)
        follower.refresh()
        for store in (fresh, follower):
            n = len(store)
            if n % batch:
                sys.exit(f"length {n} is not a multiple of {batch}")
            scores, ids = store.search(query, k=5)
            if ids.shape != (2, min(5, n)) or (n and not 0 <= ids.min() <= ids.max() < n):
                sys.exit(f"bad ids {ids.tolist()} for {n} rows")
            lengths.add(n)
        if rounds % 10 == 0:
            fresh.verify()
        rounds += 1
    print(f"done {rounds} {len(lengths)}", flush=True)
"""


def test_readers_in_another_process_see_only_whole_batches(tmp_path):
    store = _crash_store(tmp_path)
    child = _spawn(READ_WHILE_WRITTEN, store.path, BATCH, CRASH_DIM, 1.5)
    assert _read_line(child) == "ready"
    appended = 0
    while child.poll() is None and appended < 400:
        store.append(_batch(appended))
        appended += 1
    out, err = child.communicate()
    assert child.returncode == 0, err
    _, rounds, distinct_lengths = out.split()
    assert int(rounds) > 1 and int(distinct_lengths) > 1
    assert appended * BATCH > 2 * CRASH_CHUNK_ROWS  # appends crossed chunk boundaries
    _assert_holds(store, np.concatenate([_batch(i) for i in range(appended)]))
    store.verify()
    store.close()


# -- leftovers of a crashed append ------------------------------------------------------------


def test_uncommitted_garbage_is_invisible_and_cleared_by_the_next_writer(tmp_path):
    store, corpus_f32 = _filled_store(tmp_path)
    query_f32 = _embeddings(8, 3)
    before = store.search(query_f32, k=6)
    checked = store.verify()
    store.close()
    chunks = store.path / "chunks"
    for name in ("000004.bits", "000004.codes"):
        with open(chunks / name, "ab") as handle:
            handle.write(b"\x5a" * 200)
    (chunks / "000099.bits").write_bytes(b"\x01" * 64)
    (store.path / ".manifest.json.tmp-999999").write_text("{half a manifest")

    reader = CorpusStore.open(store.path)
    reopened = CorpusStore.open(store.path)
    _assert_holds(reopened, corpus_f32)
    np.testing.assert_array_equal(reopened.search(query_f32, k=6)[1], before[1])
    assert reopened.verify() == checked

    more_f32 = _embeddings(2, 10)
    np.testing.assert_array_equal(reopened.append(more_f32), np.arange(ROWS, ROWS + 10))
    _assert_holds(CorpusStore.open(store.path), np.concatenate([corpus_f32, more_f32]))
    assert reopened.verify() == (ROWS + 10) * _row_bytes(DIM)
    assert _chunk_files(store.path) == _expected_chunk_files(ROWS + 10, CHUNK_ROWS)
    assert not (store.path / ".manifest.json.tmp-999999").exists()
    # a reader that mapped the chunks before the writer cut them back still reads its snapshot
    assert len(reader) == ROWS
    np.testing.assert_array_equal(reader.search(query_f32, k=6)[1], before[1])
    for name, rows in (("000004", CHUNK_ROWS), ("000005", ROWS + 10 - 5 * CHUNK_ROWS)):
        assert (chunks / f"{name}.bits").stat().st_size == rows * ((DIM + 7) // 8)
        assert (chunks / f"{name}.codes").stat().st_size == rows * DIM
    reopened.close()


def _failing_after(calls: int, real):
    """A stand-in for ``real`` that raises ENOSPC (disk full) from its ``calls + 1``-th call on."""
    count = {"n": 0}

    def fail(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    return fail


@pytest.mark.parametrize("target", ["write_at", "write_manifest"])
def test_a_failed_append_commits_nothing_and_the_next_one_works(tmp_path, target):
    import fastquant.store.corpus as corpus_module

    store, corpus_f32 = _filled_store(tmp_path)
    manifest = (store.path / "manifest.json").read_bytes()
    extra = _embeddings(1, 3 * CHUNK_ROWS + 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            corpus_module,
            target,
            _failing_after(3 if target == "write_at" else 0, getattr(corpus_module, target)),
        )
        with pytest.raises(StoreWriteError, match="nothing was committed.*No space left"):
            store.append(extra)
    assert len(store) == len(corpus_f32)
    assert (store.path / "manifest.json").read_bytes() == manifest
    # the writer gave back the space of the failed batch at once
    assert _chunk_files(store.path) == _expected_chunk_files(len(corpus_f32), CHUNK_ROWS)
    last = (len(corpus_f32) - 1) // CHUNK_ROWS
    rows_in_last = len(corpus_f32) - last * CHUNK_ROWS
    assert (store.path / f"chunks/{last:06d}.codes").stat().st_size == rows_in_last * DIM
    reopened = CorpusStore.open(store.path)
    assert len(reopened) == len(corpus_f32)
    reopened.verify()
    store.append(extra)
    _assert_holds(CorpusStore.open(store.path), np.concatenate([corpus_f32, extra]))
    store.verify()


def test_an_append_interrupted_after_its_commit_is_kept_by_the_next(tmp_path):
    import fastquant.store.corpus as corpus_module

    store, corpus_f32 = _filled_store(tmp_path)
    first, second = _embeddings(1, 9), _embeddings(2, 4)
    real_write_manifest = corpus_module.write_manifest

    def commit_then_interrupt(path, manifest):
        real_write_manifest(path, manifest)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus_module, "write_manifest", commit_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            store.append(first)
    ids = store.append(second)
    np.testing.assert_array_equal(ids, np.arange(len(corpus_f32) + 9, len(corpus_f32) + 13))
    _assert_holds(CorpusStore.open(store.path), np.concatenate([corpus_f32, first, second]))
    store.verify()


def test_threads_appending_through_one_store_lose_nothing(tmp_path):
    store = _empty_store(tmp_path / "store")
    batches = [_embeddings(seed, 40 + seed) for seed in range(8)]
    ids: dict[int, np.ndarray] = {}

    def append(seed: int) -> None:
        ids[seed] = store.append(batches[seed])

    threads = [threading.Thread(target=append, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    corpus_f32 = np.empty((sum(map(len, batches)), DIM), np.float32)
    for seed, batch in enumerate(batches):
        corpus_f32[ids[seed]] = batch
    _assert_holds(CorpusStore.open(store.path), corpus_f32)
    store.verify()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_inherit_the_right_to_append(tmp_path):
    store, corpus_f32 = _filled_store(tmp_path)  # the parent now holds the writer lock
    pid = os.fork()
    if pid == 0:  # child: must be refused, and must not release the parent's lock
        code = 1
        try:
            store.append(_embeddings(1, 5))
        except StoreLockedError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(StoreLockedError):
        CorpusStore.open(store.path).append(_embeddings(2, 3))
    extra = _embeddings(3, 5)
    store.append(extra)
    _assert_holds(CorpusStore.open(store.path), np.concatenate([corpus_f32, extra]))


@pytest.mark.parametrize("name", ["manifest.json", "chunks/000000.bits"])
def test_open_names_a_store_file_that_is_a_directory(tmp_path, name):
    store, _ = _filled_store(tmp_path)
    (store.path / name).unlink()
    (store.path / name).mkdir()
    with pytest.raises(StoreCorruptedError, match=name):
        CorpusStore.open(store.path)


def test_open_rejects_a_manifest_with_a_fractional_row_count(tmp_path):
    store, _ = _filled_store(tmp_path)
    manifest = json.loads((store.path / "manifest.json").read_text())
    manifest["chunks"][-1]["rows"] -= 0.5
    _write_manifest(store.path, manifest)
    with pytest.raises(StoreCorruptedError, match="rows"):
        CorpusStore.open(store.path)


def test_bits_in_memory_follow_many_small_appends(tmp_path):
    store = _empty_store(tmp_path / "store", chunk_rows=50, bits_in_memory=True)
    batches = [_embeddings(seed, 13) for seed in range(9)]
    store.append(batches[0])
    early_views = store.snapshot.corpus.bits
    early_copies = [chunk.copy() for chunk in early_views]
    for batch in batches[1:]:
        store.append(batch)
    corpus_f32 = np.concatenate(batches)
    np.testing.assert_array_equal(
        np.concatenate(store.snapshot.corpus.bits), quantize_embeddings(corpus_f32, "ubinary")
    )
    for before, view in zip(early_copies, early_views):  # older snapshots never change
        np.testing.assert_array_equal(view, before)
    queries = corpus_f32[::17]
    mapped = CorpusStore.open(store.path)
    for got, expected in zip(store.search(queries, 5), mapped.search(queries, 5)):
        np.testing.assert_array_equal(got, expected)
