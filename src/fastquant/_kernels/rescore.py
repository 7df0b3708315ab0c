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
from .hints import prefetch_ahead
from .topk import EMPTY_ID, heap_replace_root, is_allowed, merge_heaps, sort_pairs


@njit(**KERNEL)
def _int8_query_terms_row(query, starts, steps, scaled):
    """Write ``query * steps`` into ``scaled (d,) float32``; return the per-query constant.

    No fastmath: with reassociation allowed, the constant's last bit differed between a process
    that compiled this kernel and one that loaded it from the cache (sharded searches compare
    scores across processes). It runs once per query, so its speed does not matter.
    """
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


@njit(**KERNEL)
def int8_query_terms(queries, starts, steps, scaled, constants):
    """``scaled (q, d) float32`` = ``queries * steps``; ``constants (q,) float32`` the per-query terms."""
    for qi in range(queries.shape[0]):
        constants[qi] = _int8_query_terms_row(queries[qi], starts, steps, scaled[qi])


@njit(**FASTMATH_KERNEL)
def score_int8_slots(scaled, constants, codes, rows, slots, per_query, out):
    """Dequantized dot products of (query, row) pairs, written to ``out`` by slot.

    Pair ``j`` is row ``rows[j]`` of ``codes (n, d) int8`` and query ``slots[j] // per_query``;
    its score goes to ``out[slots[j]]``. ``scaled, constants`` come from ``int8_query_terms``.
    Passing rows sorted reads a memory-mapped file in order. The cache lines of the row
    ``RESCORE_PREFETCH_ROWS`` ahead are requested while a row is scored.
    """
    for j in range(rows.shape[0]):
        prefetch_ahead(codes, rows, j)
        qi = slots[j] // per_query
        out[slots[j]] = constants[qi] + _dot_codes(scaled[qi], codes[rows[j]])


@njit(**PARALLEL_FASTMATH_KERNEL)
def score_int8_slots_parallel(scaled, constants, codes, rows, slots, per_query, parts, out):
    """``score_int8_slots`` with the pairs cut into ``parts`` contiguous runs, one per thread."""
    m = rows.shape[0]
    for part in prange(parts):
        lo, hi = m * part // parts, m * (part + 1) // parts
        score_int8_slots(scaled, constants, codes, rows[lo:hi], slots[lo:hi], per_query, out)


@njit(**FASTMATH_KERNEL)
def score_bit_slots(queries, totals, bits, flip, rows, slots, per_query, out):
    """``q . (2b - 1)`` of (query, row) pairs as in ``score_int8_slots``.

    ``bits (n, ceil(d / 8)) uint8`` rows, MSB first, each byte read as ``byte ^ flip`` (``0x80``
    for sentence-transformers' signed ``binary`` codes, else 0); ``totals (q,) float32`` the
    queries' sums.
    """
    d = queries.shape[1]
    for j in range(rows.shape[0]):
        prefetch_ahead(bits, rows, j)
        qi = slots[j] // per_query
        query = queries[qi]
        row = bits[rows[j]]
        on = np.float32(0.0)
        for i in range(d):
            bit = ((row[i >> 3] ^ flip) >> (7 - (i & 7))) & 1
            on += query[i] * np.float32(bit)
        out[slots[j]] = np.float32(2.0) * on - totals[qi]


@njit(**PARALLEL_FASTMATH_KERNEL)
def score_bit_slots_parallel(queries, totals, bits, flip, rows, slots, per_query, parts, out):
    """``score_bit_slots`` with the pairs cut into ``parts`` contiguous runs, one per thread."""
    m = rows.shape[0]
    for part in prange(parts):
        lo, hi = m * part // parts, m * (part + 1) // parts
        score_bit_slots(queries, totals, bits, flip, rows[lo:hi], slots[lo:hi], per_query, out)


@njit(**KERNEL)
def top_scores(scores, ids, out_scores, out_ids):
    """Best ``k = out_scores.shape[1]`` of ``scores, ids (q, c)`` by descending score, then id."""
    for qi in range(scores.shape[0]):
        sort_pairs(-scores[qi], ids[qi].copy(), out_scores[qi], out_ids[qi])
        for j in range(out_scores.shape[1]):
            out_scores[qi, j] = -out_scores[qi, j]


@njit(**FASTMATH_KERNEL)
def _int8_scan_range(
    queries, codes, starts, steps, row_lo, row_hi, allowed, filtered, heap_keys, heap_ids
):
    """Offer rows ``[row_lo, row_hi)``, those allowed only, to per-query heaps keyed by negated
    score."""
    nq, d = queries.shape
    scaled = np.empty((nq, d), dtype=np.float32)
    constants = np.empty(nq, dtype=np.float32)
    for qi in range(nq):
        constants[qi] = _int8_query_terms_row(queries[qi], starts, steps, scaled[qi])
    for r in range(row_lo, row_hi):
        if not is_allowed(allowed, filtered, r):
            continue
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
def int8_exhaustive_topk(
    queries, codes, starts, steps, allowed, filtered, k, threads, out_scores, out_ids
):
    """Exact top-k of the rows of ``codes (n, d) int8`` by dequantized dot product: every row,
    or with ``filtered`` those set in the bitmap ``allowed`` (``k`` at most their number).

    The corpus is split into ``threads`` contiguous ranges; ``threads == 1`` scans on one thread.
    Writes ``out_scores (q, k) float32`` descending and ``out_ids (q, k) int64``; ``k <= n``.
    """
    n = codes.shape[0]
    heap_keys, heap_ids = _empty_score_heaps(threads, queries.shape[0], k)
    for t in prange(threads):
        _int8_scan_range(
            queries,
            codes,
            starts,
            steps,
            n * t // threads,
            n * (t + 1) // threads,
            allowed,
            filtered,
            heap_keys[t],
            heap_ids[t],
        )
    merge_heaps(heap_keys, heap_ids, out_scores, out_ids)
    for qi in range(out_scores.shape[0]):
        for j in range(out_scores.shape[1]):
            out_scores[qi, j] = -out_scores[qi, j]
