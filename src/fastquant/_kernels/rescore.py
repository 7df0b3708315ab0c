"""Float32 queries scored against int8 codes (dequantized) or packed bits.

int8 codes are dequantized per dimension: ``x_j = start_j + (code_j + 128) * step_j``, so
``q . x = q . start + 128 * sum(q * step) + sum((q * step) * code)``: one multiply-add per
dimension once ``q * step`` and the constant are computed per query. Sentence-transformers
multiplies the query by the raw codes instead, which ignores each dimension's step.

Bit codes are scored in the BPR form ``q . (2b - 1)`` with ``b`` the unpacked bits (MSB first).
Top-k orders by descending score, equal scores by ascending id.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .config import FASTMATH_KERNEL, KERNEL, PARALLEL_FASTMATH_KERNEL
from .topk import EMPTY_ID, heap_replace_root, merge_heaps, sort_pairs


@njit(**FASTMATH_KERNEL)
def _prepare_query(query, starts, steps, scaled):
    """Write ``query * steps`` into ``scaled (d,) float32``; return the per-query constant."""
    constant = np.float32(0.0)
    total_scaled = np.float32(0.0)
    for j in range(query.shape[0]):
        scaled[j] = query[j] * steps[j]
        constant += query[j] * starts[j]
        total_scaled += scaled[j]
    return constant + np.float32(128.0) * total_scaled


@njit(**FASTMATH_KERNEL)
def _dot_codes(scaled, codes_row):
    acc = np.float32(0.0)
    for j in range(scaled.shape[0]):
        acc += scaled[j] * np.float32(codes_row[j])
    return acc


@njit(**FASTMATH_KERNEL)
def score_int8_candidates(queries, codes, candidates, starts, steps, out_scores):
    """``out_scores (q, c) float32`` = dequantized dot of each query with its candidate rows.

    ``queries (q, d) float32``, ``codes (n, d) int8``, ``candidates (q, c) int64`` row ids,
    ``starts, steps (d,) float32``.
    """
    scaled = np.empty(queries.shape[1], dtype=np.float32)
    for qi in range(queries.shape[0]):
        constant = _prepare_query(queries[qi], starts, steps, scaled)
        for c in range(candidates.shape[1]):
            out_scores[qi, c] = constant + _dot_codes(scaled, codes[candidates[qi, c]])


@njit(**FASTMATH_KERNEL)
def score_bit_candidates(queries, bits, candidates, out_scores):
    """``out_scores (q, c) float32`` = ``q . (2b - 1)`` for ``bits (n, ceil(d / 8)) uint8`` rows."""
    d = queries.shape[1]
    for qi in range(queries.shape[0]):
        query = queries[qi]
        total = np.float32(0.0)
        for j in range(d):
            total += query[j]
        for c in range(candidates.shape[1]):
            row = bits[candidates[qi, c]]
            on = np.float32(0.0)
            for j in range(d):
                bit = (row[j >> 3] >> (7 - (j & 7))) & 1
                on += query[j] * np.float32(bit)
            out_scores[qi, c] = np.float32(2.0) * on - total


@njit(**KERNEL)
def top_scores(scores, ids, out_scores, out_ids):
    """Best ``k = out_scores.shape[1]`` of ``scores, ids (q, c)`` by descending score, then id."""
    for qi in range(scores.shape[0]):
        sort_pairs(-scores[qi], ids[qi].copy(), out_scores[qi], out_ids[qi])
        for j in range(out_scores.shape[1]):
            out_scores[qi, j] = -out_scores[qi, j]


@njit(**FASTMATH_KERNEL)
def _int8_scan_range(queries, codes, starts, steps, row_lo, row_hi, heap_keys, heap_ids):
    """Offer rows ``[row_lo, row_hi)`` to per-query heaps keyed by negated score."""
    nq, d = queries.shape
    scaled = np.empty((nq, d), dtype=np.float32)
    constants = np.empty(nq, dtype=np.float32)
    for qi in range(nq):
        constants[qi] = _prepare_query(queries[qi], starts, steps, scaled[qi])
    for r in range(row_lo, row_hi):
        row = codes[r]
        for qi in range(nq):
            key = -(constants[qi] + _dot_codes(scaled[qi], row))
            # Rows arrive in ascending id, so an equal score never displaces a kept row.
            if key < heap_keys[qi, 0]:
                heap_replace_root(heap_keys[qi], heap_ids[qi], key, r)


@njit(**KERNEL)
def _empty_score_heaps(threads, nq, k):
    keys = np.full((threads, nq, k), np.inf, dtype=np.float32)
    ids = np.full((threads, nq, k), EMPTY_ID, dtype=np.int64)
    return keys, ids


@njit(**PARALLEL_FASTMATH_KERNEL)
def int8_topk(queries, codes, starts, steps, k, threads, out_scores, out_ids):
    """Exact top-k of every row of ``codes (n, d) int8`` by dequantized dot product.

    The corpus is split into ``threads`` contiguous ranges; ``threads == 1`` scans on one thread.
    Writes ``out_scores (q, k) float32`` descending and ``out_ids (q, k) int64``; ``k <= n``.
    """
    n = codes.shape[0]
    heap_keys, heap_ids = _empty_score_heaps(threads, queries.shape[0], k)
    for t in prange(threads):
        _int8_scan_range(queries, codes, starts, steps, n * t // threads, n * (t + 1) // threads, heap_keys[t], heap_ids[t])
    merge_heaps(heap_keys, heap_ids, out_scores, out_ids)
    for qi in range(out_scores.shape[0]):
        for j in range(out_scores.shape[1]):
            out_scores[qi, j] = -out_scores[qi, j]
