"""Public ``hamming_topk`` / ``compare_backends``: input checks, dtypes, shapes and cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from fastquant import compare_backends, hamming_topk, quantize_embeddings
from fastquant.backends import BACKEND_NAMES, available_backends
from naive import naive_hamming_topk


@pytest.fixture
def bits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (50, 9), dtype=np.uint8), rng.integers(
        0, 256, (3, 9), dtype=np.uint8
    )


def installed(backend: str) -> str:
    """``backend``, or a skip naming the library it needs."""
    if backend not in available_backends():
        pytest.skip(f"the {backend} backend's library is not installed")
    return backend


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_k_larger_than_corpus_returns_every_row(bits, backend):
    installed(backend)
    corpus, queries = bits
    dist, ids = hamming_topk(corpus, queries, 500, backend=backend)
    assert dist.shape == ids.shape == (3, 50)
    assert dist.dtype == np.int32 and ids.dtype == np.int64
    expected = naive_hamming_topk(corpus, queries, 500)
    assert np.array_equal(dist, expected[0]) and np.array_equal(ids, expected[1])


def test_single_query_row_and_single_corpus_row(bits):
    corpus, queries = bits
    dist, ids = hamming_topk(corpus[:1], queries[0], 3)
    assert ids.tolist() == [[0]]
    assert dist.shape == (1, 1)


def test_signed_binary_codes_give_the_same_neighbours():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 100)).astype(np.float32)
    unsigned = hamming_topk(
        quantize_embeddings(x, "ubinary"), quantize_embeddings(x[:4], "ubinary"), 7
    )
    signed = hamming_topk(quantize_embeddings(x, "binary"), quantize_embeddings(x[:4], "binary"), 7)
    assert np.array_equal(unsigned[0], signed[0]) and np.array_equal(unsigned[1], signed[1])


def test_non_contiguous_input(bits):
    corpus, queries = bits
    wide = np.repeat(corpus, 2, axis=1)[:, ::2]
    assert not wide.flags.c_contiguous
    assert np.array_equal(hamming_topk(wide, queries, 5)[1], hamming_topk(corpus, queries, 5)[1])


@pytest.mark.parametrize(
    ("corpus", "queries", "k", "kwargs", "error", "match"),
    [
        (
            np.zeros((4, 2), np.float32),
            np.zeros((1, 2), np.float32),
            1,
            {},
            TypeError,
            "packed bits as uint8",
        ),
        (
            np.zeros((4, 2), np.uint8),
            np.zeros((1, 2), np.int8),
            1,
            {},
            TypeError,
            "packed the same way",
        ),
        (
            np.zeros((4, 2), np.uint8),
            np.zeros((1, 3), np.uint8),
            1,
            {},
            ValueError,
            "dimension mismatch",
        ),
        (
            np.zeros((4, 2), np.uint8),
            np.zeros((1, 2), np.uint8),
            0,
            {},
            ValueError,
            "k must be positive",
        ),
        (
            np.zeros((4, 2), np.uint8),
            np.zeros((1, 2), np.uint8),
            -3,
            {},
            ValueError,
            "k must be positive",
        ),
        (
            np.zeros((4, 2), np.uint8),
            np.zeros((1, 2), np.uint8),
            2.5,
            {},
            TypeError,
            "k must be an integer",
        ),
        (
            np.zeros((0, 2), np.uint8),
            np.zeros((1, 2), np.uint8),
            1,
            {},
            ValueError,
            "corpus_bits is empty",
        ),
        (np.zeros((4, 2, 1), np.uint8), np.zeros((1, 2), np.uint8), 1, {}, ValueError, "2-D"),
        (
            np.zeros((4, 2), np.uint8),
            np.zeros((1, 2), np.uint8),
            1,
            {"backend": "gpu"},
            ValueError,
            "backend must be one of",
        ),
        (
            np.zeros((4, 2), np.uint8),
            np.zeros((1, 2), np.uint8),
            1,
            {"threads": 0},
            ValueError,
            "threads",
        ),
        ([[1, 2]], np.zeros((1, 2), np.uint8), 1, {}, TypeError, "packed bits as uint8"),
    ],
)
def test_bad_input_is_named(corpus, queries, k, kwargs, error, match):
    with pytest.raises(error, match=match):
        hamming_topk(corpus, queries, k, **kwargs)


def test_compare_backends_reports_agreement(bits):
    corpus, queries = bits
    for name in BACKEND_NAMES:
        installed(name)
    report = compare_backends(corpus, queries, 10)
    assert report.ok
    assert report.agree == BACKEND_NAMES
    report.raise_if_mismatch()


def test_compare_backends_names_a_disagreeing_backend(bits, monkeypatch):
    from fastquant.backends import numpy_backend

    corpus, queries = bits
    original = numpy_backend.NumpyBackend.topk

    def broken(self, *args):
        dist, ids = original(self, *args)
        return dist, ids[:, ::-1].copy()

    monkeypatch.setattr(numpy_backend.NumpyBackend, "topk", broken)
    report = compare_backends(corpus, queries, 10, backends=["numba", "numpy"])
    assert not report.ok and "numpy" in report.mismatches
    assert "ids differ" in report.mismatches["numpy"]
    with pytest.raises(AssertionError, match="numpy"):
        report.raise_if_mismatch()


def test_compare_backends_checks_every_name_before_searching(bits, monkeypatch):
    from fastquant.backends import numba_backend

    def never(*args):
        raise AssertionError("searched before the backend names were checked")

    monkeypatch.setattr(numba_backend.NumbaBackend, "topk_chunks", never)
    with pytest.raises(ValueError, match="backend must be one of"):
        compare_backends(*bits, 3, backends=["numba", "annoy"])
    with pytest.raises(TypeError, match=r"list of names such as \['numpy'\]"):
        compare_backends(*bits, 3, backends="numpy")
