"""Rescoring kernels against float64 NumPy references: int8 (dequantized), bits (BPR), exact int8 top-k."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastquant import Calibration, quantize_embeddings
from fastquant.rescore import int8_topk, rescore_bits, rescore_int8
from naive import naive_bit_scores, naive_int8_scores

DIMS = [1, 3, 7, 8, 9, 63, 64, 65, 384, 385]
#: Hypothesis strategies shared by the property tests: random data, odd dims, optional duplicate rows.
CASES = {
    "seed": st.integers(0, 2**32 - 1),
    "d": st.sampled_from(DIMS),
    "duplicates": st.booleans(),
}


def _tolerance(queries: np.ndarray, scale: float = 1.0) -> float:
    return 1e-4 * scale * (np.abs(queries).sum(axis=1).max() + 1.0)


def _data(seed: int, n: int, d: int, q: int, duplicates: bool):
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((n, d)).astype(np.float32)
    if duplicates:
        corpus = corpus[rng.integers(0, max(1, n // 3), size=n)]
    queries = rng.standard_normal((q, d)).astype(np.float32)
    calibration = Calibration.from_embeddings(rng.standard_normal((50, d)).astype(np.float32))
    return rng, corpus, queries, calibration


def _check_order(scores: np.ndarray, ids: np.ndarray) -> None:
    """Descending score, equal scores by ascending id."""
    for s, i in zip(scores, ids):
        order = np.lexsort((i, -s))
        assert np.array_equal(order, np.arange(len(s)))


@settings(deadline=None, max_examples=60)
@given(**CASES, n=st.integers(1, 60), q=st.integers(1, 5), k=st.integers(1, 70))
def test_rescore_int8_matches_dequantized_dot(seed, n, d, q, k, duplicates):
    rng, corpus, queries, calibration = _data(seed, n, d, q, duplicates)
    codes = calibration.quantize(corpus)
    c = int(rng.integers(1, n + 1))
    candidates = np.stack([rng.permutation(n)[:c] for _ in range(q)])
    scores, ids = rescore_int8(codes, queries, candidates, k, calibration=calibration)
    assert scores.shape == ids.shape == (q, min(k, c))
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    expected = naive_int8_scores(queries, codes, calibration.ranges)
    assert np.allclose(
        scores, np.take_along_axis(expected, ids, axis=1), rtol=1e-4, atol=_tolerance(queries)
    )
    for qi in range(q):
        assert set(ids[qi]) <= set(candidates[qi])
        best_left_out = np.setdiff1d(candidates[qi], ids[qi])
        if best_left_out.size:
            assert expected[qi, best_left_out].max() <= scores[qi].min() + _tolerance(queries)
    _check_order(scores, ids)


@settings(deadline=None, max_examples=60)
@given(**CASES, n=st.integers(1, 60), q=st.integers(1, 5))
def test_rescore_bits_matches_bpr_scores(seed, n, d, q, duplicates):
    rng, corpus, queries, _ = _data(seed, n, d, q, duplicates)
    bits = quantize_embeddings(corpus, "ubinary")
    candidates = np.stack([rng.permutation(n) for _ in range(q)])
    scores, ids = rescore_bits(bits, queries, candidates)
    expected = naive_bit_scores(queries, bits)
    assert np.allclose(
        scores, np.take_along_axis(expected, ids, axis=1), rtol=1e-4, atol=_tolerance(queries)
    )
    _check_order(scores, ids)


@settings(deadline=None, max_examples=60)
@given(
    **CASES,
    n=st.integers(1, 200),
    q=st.integers(1, 6),
    k=st.integers(1, 210),
    threads=st.sampled_from([1, 2]),
)
def test_int8_topk_is_exact(seed, n, d, q, k, duplicates, threads):
    _, corpus, queries, calibration = _data(seed, n, d, q, duplicates)
    codes = calibration.quantize(corpus)
    scores, ids = int8_topk(codes, queries, k, calibration=calibration, threads=threads)
    assert scores.shape == ids.shape == (q, min(k, n))
    expected = naive_int8_scores(queries, codes, calibration.ranges)
    kth = -np.sort(-expected, axis=1)[:, min(k, n) - 1]
    assert np.all(np.take_along_axis(expected, ids, axis=1) >= kth[:, None] - _tolerance(queries))
    assert np.allclose(
        scores, np.take_along_axis(expected, ids, axis=1), rtol=1e-4, atol=_tolerance(queries)
    )
    _check_order(scores, ids)


def test_int8_topk_parallel_matches_serial(monkeypatch):
    from fastquant._kernels import config

    _, corpus, queries, calibration = _data(7, 3000, 65, 3, duplicates=True)
    codes = calibration.quantize(corpus)
    serial = int8_topk(codes, queries, 50, calibration=calibration, threads=1)
    monkeypatch.setattr(config, "PARALLEL_MIN_WORK_BYTES", 0)
    parallel = int8_topk(codes, queries, 50, calibration=calibration, threads=2)
    assert np.array_equal(serial[1], parallel[1])
    assert np.array_equal(serial[0], parallel[0])


def test_duplicate_rows_tie_by_ascending_id():
    calibration = Calibration(np.array([[-1.0] * 4, [1.0] * 4], dtype=np.float32))
    codes = calibration.quantize(
        np.tile(np.array([[0.5, -0.2, 0.1, 0.9]], dtype=np.float32), (6, 1))
    )
    query = np.ones((1, 4), dtype=np.float32)
    scores, ids = rescore_int8(codes, query, np.array([[5, 1, 3, 0]]), 3, calibration=calibration)
    assert ids.tolist() == [[0, 1, 3]]
    assert len(set(scores[0].tolist())) == 1
    assert int8_topk(codes, query, 4, calibration=calibration)[1].tolist() == [[0, 1, 2, 3]]


def test_rescoring_uses_per_dimension_steps():
    """Raw-code dot products (sentence-transformers' rescoring) reorder rows; dequantizing does not."""
    calibration = Calibration(np.array([[0.0, 0.0], [1.0, 100.0]], dtype=np.float32))
    rows = np.array([[1.0, 0.0], [0.0, 50.0]], dtype=np.float32)
    codes = calibration.quantize(rows)
    query = np.array([[1.0, 1.0]], dtype=np.float32)
    _, ids = rescore_int8(codes, query, np.array([[0, 1]]), calibration=calibration)
    assert ids.tolist() == [[1, 0]]  # 50 > 1
    raw = query @ codes.astype(np.float32).T
    assert np.argmax(raw) == 0  # the raw codes rank row 0 first


def test_memory_mapped_codes(tmp_path):
    _, corpus, queries, calibration = _data(3, 40, 33, 2, duplicates=False)
    np.save(tmp_path / "codes.npy", calibration.quantize(corpus))
    codes = np.load(tmp_path / "codes.npy", mmap_mode="r")
    candidates = np.array([[0, 5, 9], [39, 1, 2]])
    assert np.array_equal(
        rescore_int8(codes, queries, candidates, calibration=calibration)[1],
        rescore_int8(np.array(codes), queries, candidates, calibration=calibration)[1],
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"query_f32": np.full((1, 4), np.nan, np.float32)}, ValueError, "NaN or Inf"),
        ({"query_f32": np.ones((1, 5), np.float32)}, ValueError, "dimension 5, expected 4"),
        ({"query_f32": np.ones((1, 4), np.int32)}, TypeError, "float"),
        ({"codes_i8": np.zeros((3, 4), np.uint8)}, TypeError, "int8"),
        ({"codes_i8": np.zeros((3, 5), np.int8)}, ValueError, "codes_i8 rows are 5-d"),
        ({"candidate_ids": np.array([[0, 3]])}, ValueError, r"\[0, 3\)"),
        ({"candidate_ids": np.array([[0, 0]])}, ValueError, "repeat"),
        ({"candidate_ids": np.array([[0.0, 1.0]])}, TypeError, "integer"),
        ({"candidate_ids": np.array([[0], [1]])}, ValueError, "shape"),
        ({"k": 0}, ValueError, "k must be positive"),
    ],
)
def test_rescore_int8_rejects_bad_input(kwargs, error, match):
    calibration = Calibration(np.array([[-1.0] * 4, [1.0] * 4], dtype=np.float32))
    args = {
        "query_f32": np.ones((1, 4), np.float32),
        "codes_i8": np.zeros((3, 4), np.int8),
        "candidate_ids": np.array([[0, 2]]),
        "calibration": calibration,
        "k": 1,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        rescore_int8(**args)


def test_rescore_bits_rejects_dimension_mismatch():
    bits = np.zeros((3, 2), np.uint8)
    with pytest.raises(ValueError, match="does not pack into 2 bytes"):
        rescore_bits(bits, np.ones((1, 17), np.float32), np.array([[0]]))
