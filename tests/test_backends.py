"""Every Hamming backend against the naive reference: awkward shapes, ties, mmap, threads."""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastquant._kernels import config
from fastquant.backends import (
    BACKEND_NAMES,
    HammingBackend,
    available_backends,
    exact_ties,
    get_backend,
    numpy_backend,
)
from naive import naive_hamming_topk

NBYTES = (1, 2, 3, 7, 8, 9, 48, 64, 128, 130)
QUERIES = (1, 2, 3, 4, 5, 9)
PROPERTY = settings(deadline=None, max_examples=50)


def backend(name: str) -> HammingBackend:
    try:
        return get_backend(name)
    except ImportError as error:
        pytest.skip(str(error))


def random_bits(rng: np.random.Generator, rows: int, nbytes: int, mode: str) -> np.ndarray:
    """``(rows, nbytes) uint8``: uniform, a few distinct rows repeated, or only the low 2 bits set."""
    if mode == "duplicates":
        pool = rng.integers(0, 256, (int(rng.integers(1, 5)), nbytes), dtype=np.uint8)
        return pool[rng.integers(0, len(pool), rows)]
    if mode == "low_bits":
        return rng.integers(0, 4, (rows, nbytes), dtype=np.uint8)
    return rng.integers(0, 256, (rows, nbytes), dtype=np.uint8)


@st.composite
def problems(draw, widths=NBYTES, modes=("uniform", "duplicates", "low_bits")):
    """``(corpus_bits (n, nbytes), query_bits (q, nbytes), k)`` with ``1 <= k <= n + 5``."""
    nbytes = draw(st.sampled_from(widths))
    n = draw(st.integers(1, 300))
    q = draw(st.sampled_from(QUERIES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mode = draw(st.sampled_from(modes))
    corpus_bits = random_bits(rng, n, nbytes, mode)
    query_bits = random_bits(rng, q, nbytes, mode)
    # Some queries equal corpus rows, so distance 0 and its ties occur.
    copied = rng.random(q) < 0.3
    query_bits[copied] = corpus_bits[rng.integers(0, n, int(copied.sum()))]
    return corpus_bits, query_bits, draw(st.integers(1, n + 5))


def check(name: str, corpus_bits, query_bits, k: int, threads: int) -> None:
    """The backend's top-``min(k, n)`` equals the naive one exactly, dtypes included."""
    expected_dist, expected_ids = naive_hamming_topk(corpus_bits, query_bits, k)
    dist, ids = backend(name).topk(corpus_bits, query_bits, min(k, len(corpus_bits)), threads)
    assert dist.dtype == np.int32 and ids.dtype == np.int64
    np.testing.assert_array_equal(dist, expected_dist)
    np.testing.assert_array_equal(ids, expected_ids)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@PROPERTY
@given(problem=problems(), threads=st.sampled_from([1, 2]))
def test_backend_matches_naive(name, problem, threads):
    check(name, *problem, threads)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(deadline=None, max_examples=40)
@given(
    problem=problems(widths=(1,), modes=("duplicates", "low_bits")),
    threads=st.sampled_from([1, 2]),
)
def test_backend_heavy_ties(name, problem, threads):
    check(name, *problem, threads)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(deadline=None, max_examples=30)
@given(problem=problems(), threads=st.sampled_from([1, 2]))
def test_backend_memmap_read_only(name, problem, threads):
    corpus_bits, query_bits, k = problem
    query_bits.flags.writeable = False
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "corpus.npy"
        np.save(path, corpus_bits)
        corpus_mmap = np.load(path, mmap_mode="r")
        check(name, corpus_mmap, query_bits, k, threads)
        del corpus_mmap


@PROPERTY
@given(problem=problems())
def test_numba_parallel_kernel_matches_naive(problem):
    with mock.patch.object(config, "PARALLEL_MIN_WORK_BYTES", 0):
        check("numba", *problem, threads=2)


@settings(deadline=None, max_examples=40)
@given(problem=problems(), rows=st.integers(1, 64), block_bytes=st.sampled_from([1, 100, 4096]))
def test_numpy_chunked_scan_matches_naive(problem, rows, block_bytes):
    """Tiny chunks and blocks force many corpus chunks and query blocks through the merge."""
    with (
        mock.patch.object(numpy_backend, "CHUNK_ROWS", rows),
        mock.patch.object(numpy_backend, "BLOCK_BYTES", block_bytes),
    ):
        check("numpy", *problem, threads=2)


@settings(deadline=None, max_examples=40)
@given(problem=problems(), reverse_ties=st.booleans())
def test_exact_ties_fixes_any_library_tie_order(problem, reverse_ties):
    """A fake library returning ties by descending (or ascending) id still yields ascending ids."""
    corpus_bits, query_bits, k = problem
    n = len(corpus_bits)
    k = min(k, n)
    all_dist, all_ids = naive_hamming_topk(corpus_bits, query_bits, n)

    def search(rows, k_request):
        dist, ids = all_dist[rows], all_ids[rows]
        order = np.lexsort((-ids if reverse_ties else ids, dist))
        take = order[:, :k_request]
        return np.take_along_axis(dist, take, 1), np.take_along_axis(ids, take, 1)

    dist, ids = exact_ties(search, len(query_bits), n, k)
    np.testing.assert_array_equal(dist, all_dist[:, :k])
    np.testing.assert_array_equal(ids, all_ids[:, :k])


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize(
    ("n", "nbytes", "high"), [(5000, 48, 256), (5000, 128, 256), (3000, 1, 4), (3000, 1, 256)]
)
def test_backends_agree_on_larger_case(name, n, nbytes, high):
    rng = np.random.default_rng(n + nbytes + high)
    corpus_bits = rng.integers(0, high, (n, nbytes), dtype=np.uint8)
    query_bits = rng.integers(0, 256, (17, nbytes), dtype=np.uint8)
    expected = naive_hamming_topk(corpus_bits, query_bits, 100)
    for threads in (1, 2):
        result = backend(name).topk(corpus_bits, query_bits, 100, threads)
        np.testing.assert_array_equal(result[0], expected[0], err_msg=f"{name} {threads}")
        np.testing.assert_array_equal(result[1], expected[1], err_msg=f"{name} {threads}")


def test_numba_restores_thread_count():
    corpus_bits = np.zeros((64, 8), dtype=np.uint8)
    before = numba.get_num_threads()
    with mock.patch.object(config, "PARALLEL_MIN_WORK_BYTES", 0):
        get_backend("numba").topk(corpus_bits, corpus_bits[:3], 5, threads=1000)
    assert numba.get_num_threads() == before


def test_faiss_restores_thread_count():
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    corpus_bits = np.zeros((64, 8), dtype=np.uint8)
    backend("faiss").topk(corpus_bits, corpus_bits[:3], 5, threads=1)
    assert faiss.omp_get_max_threads() == before


def test_registry_names_and_protocol():
    assert BACKEND_NAMES == ("numba", "numpy", "faiss", "usearch")
    assert {"numba", "numpy"} <= set(available_backends())
    for name in available_backends():
        instance = get_backend(name)
        assert isinstance(instance, HammingBackend)
        assert instance.name == name


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="'numba', 'numpy', 'faiss', 'usearch'"):
        get_backend("annoy")


@pytest.mark.parametrize(
    ("name", "modules"), [("faiss", ["faiss"]), ("usearch", ["usearch", "usearch.index"])]
)
def test_missing_library_names_the_extra(name, modules):
    with mock.patch.dict(sys.modules, dict.fromkeys(modules)):
        with pytest.raises(ImportError, match=rf"pip install 'fastquant\[{name}\]'"):
            get_backend(name)
        assert name not in available_backends()


@PROPERTY
@given(
    problem=problems(), threads=st.sampled_from([1, 2]), cuts=st.lists(st.floats(0, 1), max_size=4)
)
def test_numba_chunked_scan_matches_naive(problem, threads, cuts):
    corpus_bits, query_bits, k = problem
    bounds = sorted({0, len(corpus_bits), *(int(c * len(corpus_bits)) for c in cuts)})
    chunks = [corpus_bits[lo:hi] for lo, hi in itertools.pairwise(bounds) if hi > lo]
    expected_dist, expected_ids = naive_hamming_topk(corpus_bits, query_bits, k)
    with mock.patch.object(config, "PARALLEL_MIN_WORK_BYTES", 0):
        dist, ids = backend("numba").topk_chunks(
            chunks, query_bits, min(k, len(corpus_bits)), threads
        )
    np.testing.assert_array_equal(dist, expected_dist)
    np.testing.assert_array_equal(ids, expected_ids)


def test_numba_chunked_scan_copies_non_contiguous_chunks():
    rng = np.random.default_rng(7)
    corpus_bits = rng.integers(0, 256, (300, 24), dtype=np.uint8)
    query_bits = rng.integers(0, 256, (3, 16), dtype=np.uint8)
    chunks = [np.asfortranarray(corpus_bits[:100, :16]), corpus_bits[100:, 8:]]
    expected = naive_hamming_topk(np.concatenate([c for c in chunks]), query_bits, 7)
    result = backend("numba").topk_chunks(chunks, query_bits, 7, 2)
    np.testing.assert_array_equal(result[0], expected[0])
    np.testing.assert_array_equal(result[1], expected[1])
