"""``CorpusStore.search`` and ``exact_search`` against a plain NumPy pipeline.

The reference makes the store's bits (sign bits, or centred bits with their factors), takes the
scan's exact top ``min(k * multiplier, n)`` (Hamming distance, or the asymmetric score of 4-bit
queries from unpacked bit-planes; ties by ascending id), rescores those candidates in float64
and sorts by ``(-score, id)``. The store's float32 (fastmath) rescoring may reorder near-ties,
so rescored results are compared up to rounding; the scans' rankings (``rescore="none"``) are
compared exactly, scores included. Chunk size, append batches, backend, threads, prefetch and
in-memory bits must not change a single bit of the answer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastquant._engine import COARSE_WIDTH, NARROWING_WIDTH, SCANS, plane_queries
from fastquant._kernels import config
from fastquant.store import CorpusStore
from fastquant.store import corpus as corpus_module
from naive import (
    naive_asymmetric_scores,
    naive_bit_scores,
    naive_centred_codes,
    naive_coarse_totals,
    naive_hamming_topk,
    naive_int8_scores,
    naive_pack_bits,
    naive_quantize_int8,
)

RESCORES = ("int8", "bits", "none")
BIT_KINDS = ("centred", "sign")
DIMS = (1, 3, 8, 9, 65, 130)
CHUNK_ROWS = (1, 2, 3, 7, 64, 1 << 20)
MULTIPLIERS = (1, 2, 4, 10)
PROPERTY = settings(deadline=None, max_examples=40)
#: For tests that build or search several ways per example.
SLOWER_PROPERTY = settings(deadline=None, max_examples=30)


# -- the reference pipeline ------------------------------------------------------------------


def naive_bits(x_corpus_f32, ranges, kind):
    """What a store of ``kind`` built with ``ranges`` holds: ``(bits, factors or None, centre or
    None)``. A centred store built with ranges alone is centred at their midpoint."""
    if kind == "sign":
        return naive_pack_bits(x_corpus_f32), None, None
    centre = ((ranges[0] + ranges[1]) / 2).astype(np.float32)
    bits, factors = naive_centred_codes(x_corpus_f32, centre)
    return bits, factors, centre


def naive_scan(x_corpus_f32, ranges, queries, count, scan, kind):
    """The scan's top ``min(count, n)``: ``scores (q, c)`` (float32 as the store computes them;
    Hamming: ``dim - 2 * distance``) and ``ids (q, c)``, by ``(-score, id)``."""
    n, dim = x_corpus_f32.shape
    bits, factors, centre = naive_bits(x_corpus_f32, ranges, kind)
    count = min(count, n)
    wide = min(
        count * {"asymmetric": COARSE_WIDTH, "hamming+asymmetric": NARROWING_WIDTH}.get(scan, 1), n
    )
    planes = plane_queries(queries, centre)
    if scan.startswith("hamming"):
        query_bits = np.packbits(queries > (0 if centre is None else centre), axis=1)
        dist, ids = naive_hamming_topk(bits, query_bits, wide)
        if scan == "hamming":
            return (dim - 2 * dist).astype(np.float32), ids
    elif scan == "asymmetric":  # the ternary queries' top ``wide``
        coarse = naive_coarse_totals(planes.coarse_planes, bits)
        ids = _top(coarse, np.tile(np.arange(n), (len(queries), 1)), wide)[1]
    else:
        ids = np.tile(np.arange(n), (len(queries), 1))
    all_scores = naive_asymmetric_scores(
        planes.planes, planes.scales, planes.shifts, planes.alphas, bits, factors
    )
    return _top(np.take_along_axis(all_scores, ids, axis=1), ids, count)


def _top(scores, ids, count):
    """The first ``count`` of ``scores, ids (q, c)`` by ``(-score, id)``."""
    order = np.stack([np.lexsort((row_ids, -row)) for row, row_ids in zip(scores, ids)])
    order = order[:, :count]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def naive_bits_rescore(x_corpus_f32, ranges, queries, kind):
    """``(q, n) float64`` scores of ``rescore="bits"``: BPR ``q . (2b - 1)`` on sign bits; on
    centred bits ``f * (q' . (2b - 1)) + alpha * g`` with ``q' = q - alpha c``."""
    bits, factors, centre = naive_bits(x_corpus_f32, ranges, kind)
    if centre is None or not centre.any():
        scores = naive_bit_scores(queries, bits)
        alphas, q_centred = np.zeros(len(queries)), None
    else:
        c64 = centre.astype(np.float64)
        alphas = queries.astype(np.float64) @ c64 / (c64 @ c64)
        q_centred = queries - alphas[:, None] * c64
        scores = naive_bit_scores(q_centred, bits)
    if factors is None:
        return scores
    f, g = ((factors[:, i].astype(np.uint32) << 16).view(np.float32) for i in range(2))
    return f[None, :] * scores + alphas[:, None] * g[None, :]


def naive_store_search(
    x_corpus_f32, ranges, queries, k, multiplier, rescore, scan="hamming", kind="sign"
):
    """Reference of ``CorpusStore.search``: ``scores (q, k'), ids (q, k') int64``.

    ``x_corpus_f32 (n, dim)`` are the appended rows, ``ranges (2, dim)`` the store's int8 ranges,
    ``kind`` its bits. ``k' = min(k, n)``; the scan keeps ``min(k * multiplier, n)`` candidates
    (``k`` for ``"none"``, whose scores are the scan's, float32); rescores are float64.
    """
    n, dim = x_corpus_f32.shape
    if rescore == "none":
        multiplier = 1
    scan_scores, candidates = naive_scan(x_corpus_f32, ranges, queries, k * multiplier, scan, kind)
    if rescore == "none":
        return scan_scores, candidates
    if rescore == "int8":
        all_scores = naive_int8_scores(queries, naive_quantize_int8(x_corpus_f32, ranges), ranges)
    else:
        all_scores = naive_bits_rescore(x_corpus_f32, ranges, queries, kind)
    scores = np.take_along_axis(all_scores, candidates, axis=1)
    order = np.stack([np.lexsort((ids, -row)) for row, ids in zip(scores, candidates)])[
        :, : min(k, n)
    ]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(candidates, order, axis=1)


def naive_exact_search(x_corpus_f32, ranges, queries, k):
    """Float64 reference of ``exact_search``: every row scored by its dequantized int8 codes."""
    all_scores = naive_int8_scores(queries, naive_quantize_int8(x_corpus_f32, ranges), ranges)
    ids = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_scores, ids, axis=1), ids.astype(np.int64)


def score_tolerance(queries, ranges, rescore, x_corpus_f32=None, kind="sign"):
    """``(q,)`` bound on float32 rounding: 1e-4 of the sum of absolute terms of a score.

    An int8 score is summed as ``q . start + 128 * sum(q * step) + sum(q * step * code)``, so a
    dimension's terms reach ``|q| * (|start| + 256 * step)``; a bit score's ``|q|``, times the
    largest factor ``f`` (plus ``|alpha g|``) on centred bits.
    """
    if rescore == "int8":
        ranges = np.asarray(ranges, dtype=np.float32)
        steps = (ranges[1] - ranges[0]) / np.float32(255)
        magnitude = np.abs(ranges[0].astype(np.float64)) + 256.0 * np.where(steps == 0, 1, steps)
        return 1e-4 * (np.abs(queries.astype(np.float64)) @ magnitude) + 1e-9
    _, factors, centre = naive_bits(x_corpus_f32, ranges, kind)
    if factors is None:
        return 1e-4 * np.abs(queries.astype(np.float64)).sum(axis=1) + 1e-9
    f, g = (np.abs((factors[:, i].astype(np.uint32) << 16).view(np.float32)) for i in range(2))
    c64 = centre.astype(np.float64)
    alphas = np.abs(queries @ c64) / max(c64 @ c64, 1e-300)
    size = (np.abs(queries) + alphas[:, None] * np.abs(c64)).sum(axis=1)
    return 1e-4 * (size * f.max() + alphas * g.max()) + 1e-9


def content_rows(x_corpus_f32, ranges, rescore, kind="sign"):
    """What a row's score depends on: its int8 codes, or its packed bits (and factors)."""
    if rescore == "int8":
        return naive_quantize_int8(x_corpus_f32, ranges)
    bits, factors, _ = naive_bits(x_corpus_f32, ranges, kind)
    return bits if factors is None else np.concatenate([bits, factors.view(np.uint8)], axis=1)


def assert_ranked(scores, ids):
    """Scores descending, equal scores by ascending id, no id twice."""
    for row_scores, row_ids in zip(scores, ids):
        assert np.array_equal(np.lexsort((row_ids, -row_scores)), np.arange(len(row_ids)))
        assert len(set(row_ids.tolist())) == len(row_ids)


def assert_matches_reference(scores, ids, ref_scores, ref_ids, k, tol, content):
    """The store's ``(scores, ids)`` equal the reference top ``k`` up to float32 rounding.

    ``ref_scores, ref_ids (q, c)`` rank every candidate of the reference (``c >= k``); ``tol (q,)``
    bounds the store's rounding error; ``content (n, w)`` is what a row's score is computed from.
    Checks: shapes and dtypes; every returned id is a candidate, scored within ``tol`` of its
    reference score; the returned scores are the reference top-``k`` values within ``tol``; order
    is (score desc, id asc); a rank whose reference score stands more than ``2 tol`` from both
    neighbours holds exactly the reference id; rows with equal content tie, so a returned row
    implies every lower-id candidate with the same content was returned too.
    """
    q = ref_ids.shape[0]
    assert scores.shape == ids.shape == (q, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert_ranked(scores, ids)
    for qi in range(q):
        reference = dict(zip(ref_ids[qi].tolist(), ref_scores[qi].tolist()))
        got = ids[qi].tolist()
        assert set(got) <= set(reference), "an id outside the Hamming candidates"
        np.testing.assert_allclose(scores[qi], [reference[i] for i in got], rtol=0, atol=tol[qi])
        np.testing.assert_allclose(scores[qi], ref_scores[qi, :k], rtol=0, atol=tol[qi])
        gaps = np.diff(ref_scores[qi]) * -1
        for j in range(k):
            above = gaps[j - 1] if j > 0 else np.inf
            below = gaps[j] if j < len(gaps) else np.inf
            if above > 2 * tol[qi] and below > 2 * tol[qi]:
                assert got[j] == ref_ids[qi, j], f"query {qi} rank {j}"
        kept = set(got)
        for i in got:
            twins = [c for c in reference if c < i and np.array_equal(content[c], content[i])]
            assert kept.issuperset(twins), f"row {i} kept before an identical row of lower id"


# -- data and stores -------------------------------------------------------------------------


def sample_rows(rng: np.random.Generator, rows: int, dim: int, mode: str) -> np.ndarray:
    """``(rows, dim) float32`` of ``mode``: ``"gaussian"``; ``"pool"``, a few distinct rows
    repeated; ``"sign_pool"``, a few sign patterns with random magnitudes (Hamming ties, distinct
    scores); ``"coarse"``, integers in [-2, 2] (zeros, ties everywhere)."""
    if mode == "pool":
        pool = rng.standard_normal((int(rng.integers(1, 5)), dim))
        return pool[rng.integers(0, len(pool), rows)].astype(np.float32)
    if mode == "sign_pool":
        signs = rng.integers(-1, 2, (int(rng.integers(1, 4)), dim))
        return (
            signs[rng.integers(0, len(signs), rows)] * np.abs(rng.standard_normal((rows, dim)))
        ).astype(np.float32)
    if mode == "coarse":
        return rng.integers(-2, 3, (rows, dim)).astype(np.float32)
    return rng.standard_normal((rows, dim)).astype(np.float32)


@dataclass
class Problem:
    """A corpus, the int8 ranges it is stored with, queries, and one search request."""

    x: np.ndarray  # (n, dim) float32, appended in this order
    ranges: np.ndarray  # (2, dim) float32
    queries: np.ndarray  # (q, dim) float32
    k: int
    multiplier: int
    seed: int

    @property
    def n(self) -> int:
        return self.x.shape[0]


MODES = ("gaussian", "pool", "sign_pool", "coarse")


def make_problem(
    seed: int, dim: int, n: int, q: int, mode: str, k: int, multiplier: int, own_ranges: bool
) -> Problem:
    """``n`` corpus rows of ``mode`` and ``q`` queries, some of them copies of corpus rows.

    ``own_ranges`` takes the int8 ranges from the corpus (a dimension with one distinct value
    gets step 1); otherwise they are narrow random ranges, so many codes saturate.
    """
    rng = np.random.default_rng(seed)
    x = sample_rows(rng, n, dim, mode)
    queries = sample_rows(rng, q, dim, "coarse" if mode == "coarse" else "gaussian")
    copied = rng.random(q) < 0.4  # distance 0 and exact score ties
    queries[copied] = x[rng.integers(0, n, int(copied.sum()))]
    ranges = (
        np.vstack((x.min(0), x.max(0)))
        if own_ranges
        else np.sort(rng.standard_normal((2, dim)), axis=0)
    )
    return Problem(x, ranges.astype(np.float32), queries, k, multiplier, seed)


@st.composite
def problems(draw, dims=DIMS, max_rows=60) -> Problem:
    n = draw(st.integers(1, max_rows))
    return make_problem(
        seed=draw(st.integers(0, 2**32 - 1)),
        dim=draw(st.sampled_from(dims)),
        n=n,
        q=draw(st.sampled_from((1, 5))),
        mode=draw(st.sampled_from(MODES)),
        k=draw(st.integers(1, n + 5)),
        multiplier=draw(st.sampled_from(MULTIPLIERS)),
        own_ranges=draw(st.booleans()),
    )


#: Checked on every run, whatever hypothesis draws: one row, k > n, heavy ties, multipliers 1, 10.
EDGE_CASES = [
    make_problem(seed=1, dim=3, n=1, q=5, mode="gaussian", k=4, multiplier=10, own_ranges=True),
    make_problem(seed=2, dim=9, n=40, q=5, mode="pool", k=7, multiplier=1, own_ranges=True),
    make_problem(
        seed=3, dim=130, n=50, q=1, mode="sign_pool", k=3, multiplier=10, own_ranges=False
    ),
    make_problem(seed=4, dim=65, n=30, q=5, mode="coarse", k=35, multiplier=4, own_ranges=True),
    make_problem(seed=5, dim=3, n=60, q=5, mode="sign_pool", k=10, multiplier=1, own_ranges=False),
]


def with_edge_cases(**other_arguments):
    """Decorator: run the test on every ``EDGE_CASES`` problem, with ``other_arguments``, first."""

    def decorate(test):
        for problem in reversed(EDGE_CASES):
            test = example(problem=problem, **other_arguments)(test)
        return test

    return decorate


def random_cuts(rng: np.random.Generator, n: int) -> list[int]:
    """Batch boundaries: 0 to 4 distinct cut points inside ``(0, n)``."""
    if n < 2:
        return []
    return sorted(set(rng.integers(1, n, int(rng.integers(0, 5))).tolist()))


def build_store(
    folder: Path, problem: Problem, chunk_rows: int, cuts=(), kind: str = "centred"
) -> CorpusStore:
    """A store of ``problem.x`` with ``problem.ranges`` and bits of ``kind``, appended in batches
    split at ``cuts``.

    Durability is not under test here, so ``fsync`` (milliseconds per chunk file on a disk) is
    skipped: a store of one-row chunks would otherwise take seconds to write.
    """
    with mock.patch("os.fsync"):
        store = CorpusStore.create(
            folder, problem.x.shape[1], ranges=problem.ranges, chunk_rows=chunk_rows, bits=kind
        )
        for batch in np.split(problem.x, list(cuts)):
            store.append(batch)
    store.close()
    assert len(store) == problem.n
    return store


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory per hypothesis example (``tmp_path`` is shared by all of them)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def all_answers(
    store: CorpusStore, problem: Problem, scans=SCANS, **kwargs
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scan and rescore mode's search and the exact search of ``problem``'s request."""
    answers = {
        f"{scan} {rescore}": store.search(
            problem.queries,
            problem.k,
            scan=scan,
            rescore=rescore,
            rescore_multiplier=problem.multiplier,
            **kwargs,
        )
        for scan in scans
        for rescore in RESCORES
    }
    answers["exact"] = store.exact_search(problem.queries, problem.k, threads=kwargs.get("threads"))
    return answers


def assert_identical(expected: dict, got: dict, what: str) -> None:
    for name, (scores, ids) in expected.items():
        np.testing.assert_array_equal(got[name][1], ids, err_msg=f"{what}: {name} ids")
        assert got[name][0].dtype == scores.dtype
        np.testing.assert_array_equal(
            got[name][0].view(np.uint32), scores.view(np.uint32), err_msg=f"{what}: {name} scores"
        )


# -- against the reference -------------------------------------------------------------------


@PROPERTY
@given(
    problem=problems(),
    chunk_rows=st.sampled_from(CHUNK_ROWS),
    kind=st.sampled_from(BIT_KINDS),
)
@example(problem=EDGE_CASES[1], chunk_rows=3, kind="centred")
@example(problem=EDGE_CASES[2], chunk_rows=7, kind="sign")
@example(problem=EDGE_CASES[4], chunk_rows=2, kind="centred")
def test_search_matches_reference(problem, chunk_rows, kind):
    p = problem
    with scratch() as folder:
        store = build_store(
            folder / "store", p, chunk_rows, random_cuts(np.random.default_rng(p.seed), p.n), kind
        )
        k_out = min(p.k, p.n)
        for scan in SCANS:
            for rescore in RESCORES:
                check_against_reference(store, p, k_out, scan, rescore, kind)


def check_against_reference(store, p, k_out, scan, rescore, kind):
    scores, ids = store.search(
        p.queries, p.k, scan=scan, rescore=rescore, rescore_multiplier=p.multiplier
    )
    what = f"{scan} {rescore} {kind}"
    if rescore == "none":
        ref_scores, ref_ids = naive_store_search(
            p.x, p.ranges, p.queries, p.k, p.multiplier, "none", scan, kind
        )
        assert scores.dtype == np.float32 and ids.dtype == np.int64
        np.testing.assert_array_equal(ids, ref_ids, err_msg=what)
        np.testing.assert_array_equal(scores, ref_scores, err_msg=what)
        return
    # Rank every candidate: k = K with multiplier 1 keeps the same top K of the scan.
    candidates = min(p.k * p.multiplier, p.n)
    ref_scores, ref_ids = naive_store_search(
        p.x, p.ranges, p.queries, candidates, 1, rescore, scan, kind
    )
    tol = score_tolerance(p.queries, p.ranges, rescore, p.x, kind)
    assert_matches_reference(
        scores, ids, ref_scores, ref_ids, k_out, tol, content_rows(p.x, p.ranges, rescore, kind)
    )
    # The rescored rows are exactly the scan's top K (rescore="none" with k = K).
    _, scan_ids = store.search(p.queries, candidates, scan=scan, rescore="none")
    np.testing.assert_array_equal(np.sort(scan_ids, axis=1), np.sort(ref_ids, axis=1), what)


@PROPERTY
@given(problem=problems(), chunk_rows=st.sampled_from(CHUNK_ROWS))
@example(problem=EDGE_CASES[0], chunk_rows=1)
@example(problem=EDGE_CASES[3], chunk_rows=2)
def test_exact_search_matches_reference(problem, chunk_rows):
    p = problem
    with scratch() as folder:
        store = build_store(
            folder / "store", p, chunk_rows, random_cuts(np.random.default_rng(p.seed), p.n)
        )
        scores, ids = store.exact_search(p.queries, p.k)
        ref_scores, ref_ids = naive_exact_search(p.x, p.ranges, p.queries, p.n)
        tol = score_tolerance(p.queries, p.ranges, "int8")
        assert_matches_reference(
            scores,
            ids,
            ref_scores,
            ref_ids,
            min(p.k, p.n),
            tol,
            content_rows(p.x, p.ranges, "int8"),
        )


def test_reference_pipeline_by_hand():
    """The reference itself on a case worked out on paper (dim 3, int8 ranges [-1, 1])."""
    x = np.array([[1, -1, 1], [1, 1, 1], [-1, -1, -1], [1, -1, 1]], dtype=np.float32)
    ranges = np.array([[-1] * 3, [1] * 3], dtype=np.float32)
    query = np.array([[0.5, -0.5, 0.5]], dtype=np.float32)
    scores, ids = naive_store_search(x, ranges, query, 2, 1, "none")
    assert ids.tolist() == [[0, 3]] and scores.tolist() == [[3.0, 3.0]]
    # 4-bit query: 0.5 -> 15, -0.5 -> 0, offset 8 (delta 1/15 * 1 / 0.5 ...): rows 0 and 3 first
    scores, ids = naive_store_search(x, ranges, query, 4, 1, "none", "asymmetric")
    assert ids.tolist() == [[0, 3, 1, 2]] and scores[0, 0] == scores[0, 1] > scores[0, 2]
    scores, ids = naive_store_search(x, ranges, query, 2, 2, "bits")  # candidates 0, 3, 1
    assert ids.tolist() == [[0, 3]] and np.allclose(scores, 1.5)
    scores, ids = naive_store_search(x, ranges, query, 4, 1, "bits")
    assert ids.tolist() == [[0, 3, 1, 2]] and np.allclose(scores, [[1.5, 1.5, 0.5, -0.5]])
    scores, ids = naive_exact_search(x, ranges, query, 4)
    assert ids.tolist() == [[0, 3, 1, 2]] and np.allclose(
        scores, [[1.5, 1.5, 0.5, -0.5]], atol=0.01
    )


# -- the answer does not depend on how the store is laid out or searched ---------------------


@SLOWER_PROPERTY
@given(problem=problems(), slice_rows=st.sampled_from((2, 5, corpus_module.APPEND_SLICE_ROWS)))
@with_edge_cases(slice_rows=2)
def test_chunk_size_and_batches_do_not_change_the_answer(problem, slice_rows):
    """One batch in one chunk versus random batches, chunks and append slices: the same bits."""
    p = problem
    rng = np.random.default_rng(p.seed)
    with scratch() as folder:
        expected = all_answers(build_store(folder / "whole", p, 1 << 30), p)
        with mock.patch.object(corpus_module, "APPEND_SLICE_ROWS", slice_rows):
            stores = {
                rows: build_store(folder / f"c{rows}", p, rows, random_cuts(rng, p.n))
                for rows in CHUNK_ROWS
            }
        for chunk_rows, store in stores.items():
            assert_identical(expected, all_answers(store, p), f"chunk_rows={chunk_rows}")


@pytest.fixture(scope="module", params=["numpy", "faiss", "usearch"])
def other_backend(request) -> str:
    """A scan backend besides numba; skipped when its library is not installed."""
    if request.param != "numpy":
        pytest.importorskip({"faiss": "faiss", "usearch": "usearch.index"}[request.param])
    return request.param


@SLOWER_PROPERTY
@given(problem=problems(), chunk_rows=st.sampled_from(CHUNK_ROWS))
@with_edge_cases(chunk_rows=3)
def test_backends_give_the_numba_answer(other_backend, problem, chunk_rows):
    """On one thread: OpenMP's spinning workers slow hundreds of tiny faiss calls on a busy
    machine; threads are covered by ``test_backends.py`` and the test below."""
    p = problem
    with scratch() as folder:
        store = build_store(folder / "store", p, chunk_rows)
        hamming_only = other_backend in ("faiss", "usearch")
        scans = [scan for scan in SCANS if not (hamming_only and scan.startswith("asymmetric"))]
        expected = all_answers(store, p, scans, threads=1)
        got = all_answers(store, p, scans, threads=1, backend=other_backend)
        assert_identical(expected, got, other_backend)


@SLOWER_PROPERTY
@given(problem=problems(), chunk_rows=st.sampled_from(CHUNK_ROWS))
@with_edge_cases(chunk_rows=2)
def test_threads_prefetch_and_bits_in_memory_do_not_change_the_answer(problem, chunk_rows):
    p = problem
    with scratch() as folder:
        store = build_store(folder / "store", p, chunk_rows)
        expected = all_answers(store, p, threads=1)
        # Parallel kernels even on tiny inputs.
        with mock.patch.object(config, "PARALLEL_MIN_WORK_BYTES", 0):
            assert_identical(expected, all_answers(store, p, threads=2), "threads=2")
        assert_identical(expected, all_answers(store, p, prefetch=False), "prefetch=False")
        assert_identical(expected, all_answers(CorpusStore.open(folder / "store"), p), "reopened")
        in_memory = CorpusStore.open(folder / "store", bits_in_memory=True)
        assert_identical(expected, all_answers(in_memory, p), "bits_in_memory")


@pytest.mark.parametrize(
    "chunk_rows", [config.SCAN_BLOCK_ROWS - 1, config.SCAN_BLOCK_ROWS + 1, 1 << 20]
)
def test_chunks_across_scan_blocks(tmp_path, chunk_rows):
    """Chunks longer than one scan block (256 rows) and cut just off its boundary."""
    p = make_problem(
        seed=9, dim=130, n=700, q=5, mode="sign_pool", k=20, multiplier=4, own_ranges=False
    )
    store = build_store(tmp_path / "store", p, chunk_rows, cuts=[100, 600])
    whole = build_store(tmp_path / "whole", p, 1 << 20)
    assert_identical(all_answers(whole, p), all_answers(store, p), f"chunk_rows={chunk_rows}")
    for scan in SCANS:
        _, ref_ids = naive_store_search(
            p.x, p.ranges, p.queries, p.k, p.multiplier, "none", scan, "centred"
        )
        got = store.search(p.queries, p.k, scan=scan, rescore="none")[1]
        np.testing.assert_array_equal(got, ref_ids, err_msg=scan)
    check_against_reference(store, p, p.k, "asymmetric", "int8", "centred")


# -- edges -----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_ranges", [True, False])
def test_empty_store_returns_no_columns(tmp_path, with_ranges):
    ranges = np.array([[-1.0] * 9, [1.0] * 9], dtype=np.float32) if with_ranges else None
    store = CorpusStore.create(tmp_path / "store", 9, ranges=ranges)
    queries = np.ones((3, 9), dtype=np.float32)
    answers = [
        store.search(queries, 5, scan=scan, rescore=rescore)
        for scan in SCANS
        for rescore in RESCORES
    ]
    answers.append(store.exact_search(queries, 5))
    for scores, ids in answers:
        assert scores.shape == ids.shape == (3, 0)
        assert scores.dtype == np.float32 and ids.dtype == np.int64
    for scores, ids in (store.search(queries[0], 5), store.exact_search(queries[0], 5)):
        assert scores.shape == ids.shape == (1, 0)


@pytest.mark.parametrize("chunk_rows", [1, 3, 1 << 20])
def test_one_dimensional_query_is_one_row(tmp_path, chunk_rows):
    p = make_problem(seed=5, dim=65, n=20, q=1, mode="pool", k=4, multiplier=2, own_ranges=True)
    store = build_store(tmp_path / "store", p, chunk_rows)
    query = p.queries[0]  # (dim,)
    for scan in SCANS:
        for rescore in RESCORES:
            request = {"scan": scan, "rescore": rescore, "rescore_multiplier": p.multiplier}
            single = store.search(query, p.k, **request)
            batch = store.search(query[None, :], p.k, **request)
            assert single[0].shape == (1, p.k)
            assert_identical({rescore: batch}, {rescore: single}, "1-D query")
    single, batch = store.exact_search(query, p.k), store.exact_search(query[None, :], p.k)
    assert_identical({"exact": batch}, {"exact": single}, "1-D query")


def test_single_row_and_k_beyond_the_store(tmp_path):
    x = np.array([[0.3, -0.2, 0.0]], dtype=np.float32)
    ranges = np.array([[-1] * 3, [1] * 3], np.float32)
    store = CorpusStore.create(tmp_path / "store", 3, ranges=ranges)
    store.append(x)
    query = np.array([[1.0, 1.0, 1.0], [1.0, -0.5, 0.0]], dtype=np.float32)
    for scan in SCANS:
        for rescore in RESCORES:
            _, ids = store.search(query, 10, scan=scan, rescore=rescore, rescore_multiplier=10)
            assert ids.tolist() == [[0], [0]]
    # The row's bits are 100 (centre 0): query 0 (111) is 2 bits away, query 1 (100) none.
    assert store.search(query, 10, scan="hamming", rescore="none")[0].tolist() == [[-1.0], [3.0]]
    assert store.exact_search(query, 10)[1].tolist() == [[0], [0]]


def test_ties_across_chunks_keep_ascending_ids(tmp_path):
    """Ten identical rows split over chunks of 3: every mode returns the lowest ids, in order."""
    x = np.tile(np.array([[0.5, -0.25, 0.75, 0.1, -0.9]], np.float32), (10, 1))
    ranges = np.array([[-1] * 5, [1] * 5], np.float32)
    store = CorpusStore.create(tmp_path / "store", 5, ranges=ranges, chunk_rows=3)
    store.append(x[:4])
    store.append(x[4:])
    query = np.array([[1.0, 1.0, -1.0, 0.5, 0.25]], np.float32)
    for scan in SCANS:
        for rescore in RESCORES:
            for multiplier in (1, 10):
                scores, ids = store.search(
                    query, 4, scan=scan, rescore=rescore, rescore_multiplier=multiplier
                )
                assert ids.tolist() == [[0, 1, 2, 3]]
                assert len(set(scores[0].tolist())) == 1
    assert store.exact_search(query, 4)[1].tolist() == [[0, 1, 2, 3]]


def test_noisy_copies_find_their_source(tmp_path):
    """Unit-norm 256-d gaussians: a row plus a little noise finds that row first."""
    rng = np.random.default_rng(11)
    corpus = rng.standard_normal((3000, 256)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    sources = rng.choice(len(corpus), 100, replace=False)
    noise = 0.03 * rng.standard_normal((100, 256)).astype(np.float32)  # cosine to source ~0.9
    queries = corpus[sources] + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    store = CorpusStore.create(tmp_path / "store", 256, chunk_rows=1000)
    store.append(corpus[:1700])  # the int8 ranges come from this first batch
    store.append(corpus[1700:])
    for scan in SCANS:
        _, ids = store.search(queries, 10, scan=scan, rescore="int8", rescore_multiplier=4)
        assert (ids[:, 0] == sources).mean() >= 0.98, scan
    _, exact_ids = store.exact_search(queries, 1)
    assert (exact_ids[:, 0] == sources).mean() >= 0.98
