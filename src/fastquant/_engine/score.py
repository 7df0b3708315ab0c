"""The second stage: float32 queries scored against candidates' int8 codes or bits, and top k.

int8 scores are dot products with the dequantized codes (``start + (code + 128) * step`` per
dimension), bit scores the BPR form ``q . (2b - 1)``. Results are ordered by descending score,
equal scores by ascending id. Scoring runs on one thread below ``PARALLEL_MIN_WORK_BYTES`` of
codes read, else the pairs are split across threads; each pair's score is the same either way.
"""

from __future__ import annotations

import numpy as np

from .._kernels import config
from .._kernels import rescore as kernels
from ..quantize import Calibration
from .asymmetric import bfloat16_to_float32, centred_queries
from .corpus import ChunkedCorpus, chunk_segments, prefetch_rows
from .scan import merge_sorted


def no_results(q: int) -> tuple[np.ndarray, np.ndarray]:
    """``(q, 0) float32`` scores and ``(q, 0) int64`` ids: the answer of an empty corpus."""
    return np.empty((q, 0), np.float32), np.empty((q, 0), np.int64)


def int8_query_terms(
    queries: np.ndarray, calibration: Calibration
) -> tuple[np.ndarray, np.ndarray]:
    """``queries (q, d) float32`` -> ``scaled (q, d) float32``, ``constants (q,) float32``.

    A row's dequantized dot product is then ``constants[q] + scaled[q] . codes``.
    """
    scaled = np.empty_like(queries)
    constants = np.empty(queries.shape[0], dtype=np.float32)
    kernels.int8_query_terms(queries, calibration.starts, calibration.steps, scaled, constants)
    return scaled, constants


def _parts(pairs: int, row_bytes: int, threads: int) -> int:
    """Threads worth waking for ``pairs`` rows of ``row_bytes`` each."""
    return 1 if pairs * row_bytes < config.PARALLEL_MIN_WORK_BYTES else min(threads, pairs)


def score_int8(
    corpus: ChunkedCorpus,
    queries: np.ndarray,
    candidates: np.ndarray,
    *,
    threads: int = 1,
    prefetch: bool = True,
) -> np.ndarray:
    """Scores ``(q, c) float32`` of ``candidates (q, c) int64`` global ids against their codes.

    Ids outside ``[0, rows)`` are skipped (their scores are undefined). With ``prefetch``, each
    chunk's candidate pages are announced to the OS (``madvise``) before any is read, so rows not
    in memory are fetched together rather than one fault at a time.
    """
    scaled, constants = int8_query_terms(queries, corpus.calibration)
    scores = np.empty(candidates.shape, dtype=np.float32)
    flat, per_query = scores.reshape(-1), candidates.shape[1]
    for c, rows, slots in chunk_segments(candidates, corpus.offsets):
        codes = corpus.codes[c]
        if prefetch:
            prefetch_rows(codes, rows)
        parts = _parts(rows.size, corpus.dim, threads)
        if parts == 1:
            kernels.score_int8_slots(scaled, constants, codes, rows, slots, per_query, flat)
        else:
            with config.numba_threads(parts) as used:
                kernels.score_int8_slots_parallel(
                    scaled, constants, codes, rows, slots, per_query, used, flat
                )
    return scores


def score_bits(
    corpus: ChunkedCorpus, queries: np.ndarray, candidates: np.ndarray, *, threads: int = 1
) -> np.ndarray:
    """Scores ``(q, c) float32`` of ``candidates`` from their bits and the float32 queries.

    Sign bits: ``q . (2b - 1)`` (BPR). Centred bits: the float form of the asymmetric estimate,
    ``f * (q' . (2b - 1)) + alpha * g`` (:mod:`.asymmetric`), with ``q'`` the query less its
    component along the centre.
    """
    alphas = np.zeros(queries.shape[0], dtype=np.float32)
    if corpus.centre is not None:
        queries, alphas = centred_queries(queries, corpus.centre)
    totals = queries.sum(axis=1, dtype=np.float32)
    scores = np.empty(candidates.shape, dtype=np.float32)
    flat, per_query, flip = scores.reshape(-1), candidates.shape[1], np.uint8(corpus.bits_flip)
    for c, rows, slots in chunk_segments(candidates, corpus.offsets):
        bits = corpus.bits[c]
        parts = _parts(rows.size, corpus.dim, threads)
        if parts == 1:
            kernels.score_bit_slots(queries, totals, bits, flip, rows, slots, per_query, flat)
        else:
            with config.numba_threads(parts) as used:
                kernels.score_bit_slots_parallel(
                    queries, totals, bits, flip, rows, slots, per_query, used, flat
                )
        if corpus.factors:
            f, g = (bfloat16_to_float32(corpus.factors[c][rows, i]) for i in range(2))
            flat[slots] = f * flat[slots] + alphas[slots // per_query] * g
    return scores


def top_by_score(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k <= c`` of ``scores (q, c) float32, ids (q, c) int64``: score descending, then id."""
    out_scores = np.empty((ids.shape[0], k), dtype=np.float32)
    out_ids = np.empty((ids.shape[0], k), dtype=np.int64)
    kernels.top_scores(scores, ids, out_scores, out_ids)
    return out_scores, out_ids


def exact_int8(
    corpus: ChunkedCorpus, queries: np.ndarray, k: int, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive top ``min(k, searchable rows)`` by dequantized int8 dot product over every
    chunk; rows not allowed are skipped."""
    calibration = corpus.calibration
    keys, ids = [], []
    for c, (codes, offset) in enumerate(zip(corpus.codes, corpus.offsets)):
        k_chunk = min(k, corpus.chunk_allowed_rows(c))
        if k_chunk == 0:
            continue
        bitmap = corpus.chunk_allowed(c)
        allowed = np.empty(0, np.uint8) if bitmap is None else bitmap
        used = 1 if codes.size * queries.shape[0] < config.PARALLEL_MIN_WORK_BYTES else threads
        scores = np.empty((queries.shape[0], k_chunk), dtype=np.float32)
        local = np.empty((queries.shape[0], k_chunk), dtype=np.int64)
        with config.numba_threads(used) as used:
            kernels.int8_exhaustive_topk(
                queries, codes, calibration.starts, calibration.steps, allowed,
                bitmap is not None, k_chunk, used, scores, local,
            )  # fmt: skip
        keys.append(-scores)
        ids.append(local + offset)
    k = min(k, corpus.searchable_rows)
    if not keys:
        return no_results(queries.shape[0])
    neg_scores, merged_ids = merge_sorted(keys, ids, k, np.float32(np.inf))
    return -neg_scores, merged_ids
