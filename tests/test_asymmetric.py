"""The asymmetric scan (4-bit query bit-planes against packed bits) against its NumPy reference.

``naive_asymmetric_scores`` unpacks every bit and multiplies; the kernels popcount bit-planes in
vector code. Scores must agree to the bit (the float32 operations are the same, in the same
order), and the top-k ids exactly, ties by ascending id, on every backend and thread count, on
odd dimensions (whole and partial 64-bit words, rows past the 16 specialised word widths), one
row, k beyond the corpus, duplicate rows and memory maps. Centred bits and their factors are
checked against ``naive_centred_codes``; the query preparation on its own. The coarse scan of
the default route (ternary queries in 2 planes, rows ranked by their integer totals alone) is
checked the same way against ``naive_coarse_totals``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastquant import asymmetric_topk, centred_bits, quantize_embeddings
from fastquant._engine import ChunkedCorpus, plane_queries
from fastquant._engine.asymmetric import asymmetric_keys, score_asymmetric
from fastquant._kernels import config
from naive import (
    naive_asymmetric_scores,
    naive_centred_codes,
    naive_coarse_totals,
    naive_digit_values,
)

#: Whole words, partial words, the widths loaded four rows packed (128, 256, 384), and widths
#: past the 16 specialised ones (1100 bits: 17 words + 4 bytes).
DIMS = [1, 3, 7, 8, 9, 63, 64, 65, 100, 128, 256, 384, 385, 1024, 1100]
PROPERTY = settings(deadline=None, max_examples=60)
#: Scan problems: odd widths, one row, k beyond the corpus, duplicate rows, sign or centred bits.
SCAN_CASES = {
    "seed": st.integers(0, 2**32 - 1),
    "d": st.sampled_from(DIMS),
    "n": st.integers(1, 300),
    "q": st.sampled_from([1, 3, 4, 5, 9]),
    "k": st.integers(1, 310),
    "duplicates": st.booleans(),
    "centred": st.booleans(),
}


def _data(seed: int, n: int, d: int, q: int, duplicates: bool, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    corpus = (scale * rng.standard_normal((n, d))).astype(np.float32)
    if duplicates:
        corpus = corpus[rng.integers(0, max(1, n // 3), size=n)]
    queries = rng.standard_normal((q, d)).astype(np.float32)
    copied = rng.random(q) < 0.3  # queries equal to rows: ties at the top
    queries[copied] = corpus[rng.integers(0, n, int(copied.sum()))]
    return corpus, queries


def _reference(bits, factors, centre, queries, k, coarse=False):
    """Reference top-k: scores ``(q, k')`` and ids by (score descending, id ascending)."""
    planes = plane_queries(queries, centre)
    if coarse:
        scores = naive_coarse_totals(planes.coarse_planes, bits)
    else:
        scores = naive_asymmetric_scores(
            planes.planes, planes.scales, planes.shifts, planes.alphas, bits, factors
        )
    ids = np.stack([np.lexsort((np.arange(len(row)), -row)) for row in scores])[:, :k]
    return np.take_along_axis(scores, ids, axis=1), ids


def _stored(corpus, queries, centred):
    """The corpus's bits (centred at its mean, or sign bits) as a ``ChunkedCorpus``, the queries
    prepared for it, and ``(bits, factors, centre)``."""
    centre = corpus.mean(axis=0).astype(np.float32) if centred else None
    if centred:
        bits, factors = centred_bits(corpus, centre)
    else:
        bits, factors = quantize_embeddings(corpus, "ubinary"), None
    view = ChunkedCorpus.of_arrays(corpus.shape[1], bits=bits, centre=centre, factors=factors)
    return view, plane_queries(queries, centre), (bits, factors, centre)


def _candidates(view, prepared, k, backend, threads, coarse):
    """The scan's top ``k``: scores descending, ids."""
    keys, ids = asymmetric_keys(view, prepared, k, backend, threads, coarse)
    return -keys, ids


def _assert_same(got, expected):
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[0].dtype == np.float32 and got[1].dtype == np.int64
    np.testing.assert_array_equal(got[0].view(np.uint32), expected[0].view(np.uint32))


@PROPERTY
@given(**SCAN_CASES)
def test_kernel_matches_reference(seed, d, n, q, k, duplicates, centred):
    corpus, queries = _data(seed, n, d, q, duplicates)
    if centred:
        centre = corpus.mean(axis=0).astype(np.float32)
        bits, factors = centred_bits(corpus, centre)
        kwargs = {"centre": centre, "factors": factors}
    else:
        centre, factors, kwargs = None, None, {}
        bits = quantize_embeddings(corpus, "ubinary")
    expected = _reference(bits, factors, centre, queries, min(k, n))
    for backend in ("numba", "numpy"):
        _assert_same(
            asymmetric_topk(bits, queries, k, backend=backend, threads=1, **kwargs), expected
        )
    with mock.patch.object(config, "PARALLEL_MIN_WORK_BYTES", 0):  # threads even on tiny inputs
        _assert_same(asymmetric_topk(bits, queries, k, threads=2, **kwargs), expected)


@PROPERTY
@given(**SCAN_CASES)
def test_coarse_kernel_matches_reference(seed, d, n, q, k, duplicates, centred):
    """The ternary queries' scan, as the default route's first stage runs it."""
    corpus, queries = _data(seed, n, d, q, duplicates)
    view, prepared, (bits, factors, centre) = _stored(corpus, queries, centred)
    expected = _reference(bits, factors, centre, queries, min(k, n), coarse=True)
    for backend in ("numba", "numpy"):
        got = _candidates(view, prepared, k, backend, 1, coarse=True)
        _assert_same(got, expected)
    with mock.patch.object(config, "PARALLEL_MIN_WORK_BYTES", 0):
        _assert_same(_candidates(view, prepared, k, "numba", 2, coarse=True), expected)
    again = score_asymmetric(view, prepared, expected[1], coarse=True)
    np.testing.assert_array_equal(again.view(np.uint32), expected[0].view(np.uint32))


@settings(deadline=None, max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.sampled_from(DIMS),
    n=st.integers(1, 80),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e30]),
)
def test_centred_bits_match_reference(seed, d, n, dtype, scale):
    if dtype == np.float16 and not 1e-4 < scale < 1e4:
        scale = 1.0  # float16 holds neither extreme
    corpus, _ = _data(seed, n, d, 1, duplicates=False, scale=scale)
    corpus = corpus.astype(dtype)
    centre = np.random.default_rng(seed + 1).standard_normal(d).astype(np.float32) * scale
    centre = centre.astype(dtype).astype(np.float32)  # representable beside the rows
    bits, factors = centred_bits(corpus, centre)
    expected_bits, expected_factors = naive_centred_codes(corpus.astype(np.float64), centre)
    np.testing.assert_array_equal(bits, expected_bits)
    np.testing.assert_array_equal(factors, expected_factors)


def test_factors_of_extreme_rows_saturate_and_stay_finite():
    rows = np.array([[3e38, -3e38, 1.0], [0.0, 0.0, 0.0]], np.float32)
    bits, factors = centred_bits(rows, np.zeros(3, np.float32))
    values = (factors.astype(np.uint32) << 16).view(np.float32)
    assert np.isfinite(values).all()
    assert values[1].tolist() == [0.0, 0.0]  # a row at the centre: no spread, no NaN
    assert bits.tolist() == [[0b10100000], [0]]


@pytest.mark.parametrize("d", [1, 9, 384])
def test_query_preparation_does_not_depend_on_the_batch(d):
    queries = np.random.default_rng(d).standard_normal((7, d)).astype(np.float32)
    centre = np.random.default_rng(1).standard_normal(d).astype(np.float32)
    batch = plane_queries(queries, centre)
    for i in range(7):
        alone = plane_queries(queries[i : i + 1], centre)
        for field in dataclasses.fields(batch):
            np.testing.assert_array_equal(
                getattr(alone, field.name)[0], getattr(batch, field.name)[i]
            )


def test_query_preparation_quantizes_to_signed_4_bits_with_least_error():
    """Values -8..7 (three balanced-ternary digits, no bit in both planes of a digit); the
    chosen scale reconstructs the query at least as well as the scale of
    the full range (``max |q| / 7.5``) does; a zero query gives no NaN."""
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((50, 64)).astype(np.float32)
    queries[0] = 0
    prepared = plane_queries(queries, None)
    values = naive_digit_values(prepared.planes)
    assert values.min() >= -8 and values.max() <= 7
    deltas = prepared.scales.astype(np.float64) / 2
    error = ((queries - deltas[:, None] * values) ** 2).sum(axis=1)
    full = np.abs(queries).max(axis=1) / 7.5
    full = np.where(full > 0, full, 1.0)
    plain = np.clip(np.round(queries / full[:, None]), -8, 7)
    plain_error = ((queries - full[:, None] * plain) ** 2).sum(axis=1)
    assert (error <= plain_error * (1 + 1e-6) + 1e-12).all()
    np.testing.assert_allclose(prepared.shifts, -deltas * values.sum(axis=1), rtol=1e-6)
    assert np.isfinite(prepared.scales).all() and np.isfinite(prepared.shifts).all()


def test_coarse_queries_are_ternary_with_least_error():
    """Values -1, 0, 1 (a plane of +1s and one of -1s, never both); the chosen threshold, with
    its level ``lam`` the mean ``|q_j|`` it keeps, reconstructs the query at least as well as
    ``0.6 rms`` (near the Gaussian optimum) does; a zero query gives a zero ternary query."""
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((50, 100)).astype(np.float32) * rng.random((50, 1)) * 3
    queries[0] = 0
    prepared = plane_queries(queries, None)
    plus, minus = (np.unpackbits(prepared.coarse_planes[:, p], axis=1)[:, :100] for p in (0, 1))
    assert not (plus & minus).any()
    values = plus.astype(np.int64) - minus
    kept_by_query = np.abs(values)
    lam = (np.abs(queries) * kept_by_query).sum(axis=1) / np.maximum(kept_by_query.sum(axis=1), 1)
    error = ((queries - lam[:, None] * values) ** 2).sum(axis=1)
    rms = np.sqrt((queries.astype(np.float64) ** 2).mean(axis=1, keepdims=True))
    kept = np.abs(queries) > 0.6 * rms
    level = (np.abs(queries) * kept).sum(axis=1) / np.maximum(kept.sum(axis=1), 1)
    plain_error = ((queries - np.sign(queries) * kept * level[:, None]) ** 2).sum(axis=1)
    assert (error <= plain_error * (1 + 1e-5) + 1e-12).all()
    assert not values[0].any()


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.sampled_from([7, 64, 100, 384, 385]),
    n=st.integers(257, 3000),
    k=st.integers(1, 60),
    coarse=st.booleans(),
    centred=st.booleans(),
)
def test_rows_skipped_by_their_totals_could_not_enter(seed, d, n, k, coarse, centred):
    """Many blocks: once a heap is full, blocks and rows whose integer totals fall below
    ``threshold_total`` are skipped; rows of widely varying norms (factors) and duplicates (ties
    at the threshold) must still give the reference's answer."""
    corpus, queries = _data(seed, n, d, 3, duplicates=True)
    corpus *= np.random.default_rng(seed).uniform(0.05, 20.0, (n, 1)).astype(np.float32)
    view, prepared, (bits, factors, centre) = _stored(corpus, queries, centred)
    expected = _reference(bits, factors, centre, queries, min(k, n), coarse=coarse)
    for threads in (1, 2):
        with mock.patch.object(config, "PARALLEL_MIN_WORK_BYTES", 0):
            got = _candidates(view, prepared, k, "numba", threads, coarse=coarse)
        _assert_same(got, expected)


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    nbytes=st.integers(1, 6),
)
def test_threshold_total_bounds_every_row_within_the_factor_bounds(seed, nbytes):
    """Below the threshold no row with factors inside the bounds scores above the worst kept
    score (float32, as the kernel computes it); at the threshold the bound says one could."""
    from fastquant._kernels.asymmetric import _EVERY_ROW, row_score, threshold_total

    rng = np.random.default_rng(seed)
    most = 64 * nbytes
    f = np.sort(rng.uniform(0.0, 2.0, 2)).astype(np.float32)
    g = np.sort(rng.normal(0.0, 0.5, 2)).astype(np.float32)
    scale, shift, alpha = (np.float32(v) for v in (rng.uniform(1e-3, 1.0), *rng.normal(0, 2, 2)))
    bounds = np.array([f[0], f[1], g[0], g[1]], dtype=np.float64)
    fs = np.concatenate([f, rng.uniform(f[0], f[1], 6).astype(np.float32)])
    gs = np.concatenate([g, rng.uniform(g[0], g[1], 6).astype(np.float32)])
    totals = np.arange(-most, most + 1)
    scores = np.array(
        [[row_score(t, scale, shift, alpha, fi, gi) for fi, gi in zip(fs, gs)] for t in totals]
    )
    for beaten in rng.choice(scores.reshape(-1), 20):
        threshold = threshold_total(np.float32(-beaten), scale, shift, alpha, bounds, most)
        if threshold == _EVERY_ROW:
            continue
        assert (scores[totals < threshold] <= beaten).all()


@pytest.mark.parametrize("d", [9, 385])
def test_candidate_scores_equal_the_scan_scores(d):
    corpus, queries = _data(5, 200, d, 5, duplicates=True)
    centre = corpus.mean(axis=0).astype(np.float32)
    bits, factors = centred_bits(corpus, centre)
    scores, ids = asymmetric_topk(bits, queries, 50, centre=centre, factors=factors)
    corpus_view = ChunkedCorpus.of_arrays(d, bits=bits, centre=centre, factors=factors)
    again = score_asymmetric(corpus_view, plane_queries(queries, centre), ids)
    np.testing.assert_array_equal(again.view(np.uint32), scores.view(np.uint32))


def test_memory_mapped_and_read_only_bits_are_scanned_in_place():
    corpus, queries = _data(2, 500, 130, 4, duplicates=False)
    bits = quantize_embeddings(corpus, "ubinary")
    expected = asymmetric_topk(bits, queries, 7)
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "bits.npy", bits)
        mapped = np.load(Path(folder) / "bits.npy", mmap_mode="r")
        _assert_same(asymmetric_topk(mapped, queries, 7), expected)
        del mapped


def test_identical_rows_tie_by_ascending_id():
    corpus = np.tile(np.random.default_rng(0).standard_normal((1, 70)), (12, 1)).astype(np.float32)
    bits = quantize_embeddings(corpus, "ubinary")
    scores, ids = asymmetric_topk(bits, corpus[:2], 5)
    assert ids.tolist() == [[0, 1, 2, 3, 4]] * 2
    assert len(set(scores[0].tolist())) == 1


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"corpus_bits": np.zeros((4, 2), np.int8)}, TypeError, r"view\(np.uint8\) \^ 0x80"),
        ({"corpus_bits": np.zeros((4, 2), np.float32)}, TypeError, "packed bits as uint8"),
        ({"query_f32": np.ones((1, 17), np.float32)}, ValueError, "does not pack into 2 bytes"),
        ({"centre": np.zeros(16, np.float32)}, ValueError, "centre and factors come together"),
        (
            {"centre": np.zeros(16, np.float32), "factors": np.zeros((4, 2), np.float32)},
            TypeError,
            "uint16",
        ),
        (
            {"centre": np.zeros(16, np.float32), "factors": np.zeros((3, 2), np.uint16)},
            ValueError,
            r"shape \(4, 2\)",
        ),
        ({"centre": np.zeros(15), "factors": np.zeros((4, 2), np.uint16)}, ValueError, "centre"),
        ({"backend": "faiss"}, ValueError, "backend must be one of 'numba', 'numpy'"),
        ({"k": 0}, ValueError, "k must be positive"),
        ({"threads": 1.5}, TypeError, "threads must be an integer"),
        ({"query_f32": np.full((1, 16), np.nan, np.float32)}, ValueError, "NaN"),
        ({"query_f32": np.full((1, 16), 1e37, np.float32)}, ValueError, "too large to score"),
    ],
)
def test_bad_input_is_named(arguments, error, match):
    call = {
        "corpus_bits": np.zeros((4, 2), np.uint8),
        "query_f32": np.ones((1, 16), np.float32),
        "k": 3,
    }
    call.update(arguments)
    with pytest.raises(error, match=match):
        asymmetric_topk(**call)
