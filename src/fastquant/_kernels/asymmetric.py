"""Asymmetric top-k: packed bit rows scored against 4-bit queries, corpus-parallel over chunks.

A query is given as its 4 bit-planes ``planes_flat (q * 4 * nbytes,) uint8`` (see
:mod:`fastquant._kernels.bitplanes`) with per-query float32 ``scales``, ``shifts``, ``alphas``
(q,). For row bits ``b`` the kernel computes the integer ``t = sum_j w_j b_j`` of the signed
4-bit query values ``w`` and the float32 score ``s = scale * t + shift`` (an estimate of
``q' . (2b - 1)``). With row factors (``factor_addresses``: per chunk, ``(rows, 2) uint16``
bfloat16 pairs ``(f, g)``) the score is ``f * s + alpha * g`` (without, ``f = 1`` and ``g = 0``:
the same float32 operations). Every operation is a single float32 operation in this order, so
the NumPy reference reproduces each score bit for bit. With ``coarse`` the queries are ternary,
in ``COARSE_PLANES`` planes (half the popcounts), with their own scales and shifts. Top-k keeps
the highest scores, equal scores by ascending id, as negated keys in the heaps of
:mod:`fastquant._kernels.topk`.

Chunks are scanned like the Hamming scan's (:mod:`fastquant._kernels.hamming`): every thread takes
an equal run of all chunks' blocks, with heaps that live across chunks, merged at the end; the
result depends neither on the thread count nor on the chunking.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, prange

from .bitplanes import (
    COARSE_WEIGHTS,
    PLANE_WEIGHTS,
    and_popcount_byte,
    and_popcount_word,
    bfloat16_pair,
    coarse_block_1,
    coarse_block_4,
    plane_block_1,
    plane_block_4,
)
from .config import INLINE_KERNEL, KERNEL, PARALLEL_KERNEL, SCAN_BLOCK_ROWS
from .hamming import _bytes_at, chunk_bitmap, share_of_blocks
from .popcount import QUERIES_PER_SCAN
from .topk import EMPTY_ID, heap_replace_root, is_allowed, merge_heaps

_PLANE_WEIGHTS = np.array(PLANE_WEIGHTS, dtype=np.int64)
_COARSE_WEIGHTS = np.array(COARSE_WEIGHTS, dtype=np.int64)


@njit(**INLINE_KERNEL)
def plane_weights(coarse):
    """``(planes,) int64``: the weight of each plane of a query (coarse: ternary)."""
    return _COARSE_WEIGHTS if coarse else _PLANE_WEIGHTS


@njit(**KERNEL)
def block_plane_totals(
    corpus_flat, planes_flat, nbytes, coarse, row_lo, row_hi, q_lo, q_hi, totals, prefetch_bytes
):
    """``totals[j * SCAN_BLOCK_ROWS + r - row_lo]``: ``t`` of row ``r`` and query ``q_lo + j``
    (4-bit, or ternary if ``coarse``), trailing bytes (``nbytes % 8``) included."""
    weights = plane_weights(coarse)
    stride = weights.shape[0] * nbytes
    if q_hi - q_lo == QUERIES_PER_SCAN:
        q_off = q_lo * stride
        if coarse:
            coarse_block_4(
                corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, 0, prefetch_bytes
            )
        else:
            plane_block_4(
                corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, 0, prefetch_bytes
            )
    else:
        for qi in range(q_lo, q_hi):
            q_off, col = qi * stride, qi - q_lo
            if coarse:
                coarse_block_1(
                    corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, col,
                    prefetch_bytes,
                )  # fmt: skip
            else:
                plane_block_1(
                    corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, col,
                    prefetch_bytes,
                )  # fmt: skip
    first_tail_byte = nbytes - nbytes % 8
    if first_tail_byte == nbytes:
        return
    for r in range(row_lo, row_hi):
        at = r * nbytes
        for qi in range(q_lo, q_hi):
            extra = 0
            for p in range(weights.shape[0]):
                plane = qi * stride + p * nbytes
                for byte in range(first_tail_byte, nbytes):
                    count = and_popcount_byte(corpus_flat, at + byte, planes_flat, plane + byte)
                    extra += count * weights[p]
            totals[(qi - q_lo) * SCAN_BLOCK_ROWS + r - row_lo] += extra


@njit(**INLINE_KERNEL)
def row_score(t, scale, shift, alpha, f, g):
    """Score of a row with integer plane total ``t`` and factors ``f, g``."""
    return f * (scale * np.float32(t) + shift) + alpha * g


@njit(**KERNEL)
def block_keys(totals, factor_pairs, has_factors, scale, shift, alpha, keys, worst, better):
    """``keys (m,) = -score`` of a block's rows for one query, ``factor_pairs (m,) uint32`` their
    bfloat16 ``(f, g)`` (ignored without factors); ``better (m,) uint8``: whether each key beats
    ``worst``; whether any does."""
    if has_factors:
        for i in range(keys.shape[0]):
            f, g = bfloat16_pair(factor_pairs[i])
            keys[i] = -row_score(totals[i], scale, shift, alpha, f, g)
    else:
        for i in range(keys.shape[0]):
            keys[i] = -row_score(totals[i], scale, shift, alpha, np.float32(1.0), np.float32(0.0))
    found = 0
    for i in range(keys.shape[0]):
        flag = keys[i] < worst
        better[i] = flag
        found |= flag
    return found != 0


@njit(**KERNEL)
def scan_range(
    corpus_flat,
    factors,
    has_factors,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
    coarse,
    row_lo,
    row_hi,
    heap_keys,
    heap_ids,
    prefetch_bytes,
    id_offset,
    allowed,
    filtered,
):
    """Offer rows ``[row_lo, row_hi)`` as ids ``id_offset + row`` to every query's heap ``(q,
    k)``, those allowed only (``filtered``: ``allowed`` is the chunk's bitmap, see
    :func:`~fastquant._kernels.hamming.is_allowed`)."""
    nq = heap_keys.shape[0]
    totals = np.empty(QUERIES_PER_SCAN * SCAN_BLOCK_ROWS, dtype=np.int32)
    keys = np.empty(SCAN_BLOCK_ROWS, dtype=np.float32)
    better = np.zeros(SCAN_BLOCK_ROWS, dtype=np.uint8)
    flag_words = better.view(np.uint64)
    for block_lo in range(row_lo, row_hi, SCAN_BLOCK_ROWS):
        block_hi = min(block_lo + SCAN_BLOCK_ROWS, row_hi)
        m = block_hi - block_lo
        pairs = factors[block_lo:block_hi] if has_factors else factors
        for q_lo in range(0, nq, QUERIES_PER_SCAN):
            q_hi = min(q_lo + QUERIES_PER_SCAN, nq)
            block_plane_totals(
                corpus_flat, planes_flat, nbytes, coarse, block_lo, block_hi, q_lo, q_hi, totals,
                prefetch_bytes,
            )  # fmt: skip
            for qi in range(q_lo, q_hi):
                heap = heap_keys[qi]
                column = (qi - q_lo) * SCAN_BLOCK_ROWS
                if not block_keys(
                    totals[column : column + m], pairs, has_factors, scales[qi], shifts[qi],
                    alphas[qi], keys[:m], heap[0], better[:m],
                ):  # fmt: skip
                    continue
                ids = heap_ids[qi]
                worst = heap[0]
                # Eight flags a word: rows that did not beat the worst key at the block's start
                # never will. Rows arrive in ascending id, so an equal key never displaces a
                # kept row.
                for w in range((m + 7) // 8):
                    if flag_words[w] == 0:
                        continue
                    for i in range(8 * w, min(m, 8 * w + 8)):
                        if keys[i] < worst and is_allowed(allowed, filtered, block_lo + i):
                            heap_replace_root(heap, ids, keys[i], block_lo + i + id_offset)
                            worst = heap[0]


@njit(**KERNEL)
def _empty_heaps(threads, nq, k):
    keys = np.full((threads, nq, k), np.inf, dtype=np.float32)
    ids = np.full((threads, nq, k), EMPTY_ID, dtype=np.int64)
    return keys, ids


@njit(**KERNEL)
def _scan_chunks(
    addresses,
    factor_addresses,
    rows,
    allow_addresses,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
    coarse,
    part,
    parts,
    heap_keys,
    heap_ids,
    prefetch_bytes,
):
    """Scan share ``part`` of ``parts`` of all chunks' blocks, in order, into one set of heaps."""
    has_factors = factor_addresses.shape[0] > 0
    own_lo, own_hi = share_of_blocks(rows, part, parts)
    first_block, id_offset = 0, 0
    for c in range(addresses.shape[0]):
        n = rows[c]
        blocks = (n + SCAN_BLOCK_ROWS - 1) // SCAN_BLOCK_ROWS
        block_lo = max(own_lo, first_block) - first_block
        block_hi = min(own_hi, first_block + blocks) - first_block
        if block_hi > block_lo:
            corpus_flat = carray(_bytes_at(addresses[c]), n * nbytes)
            factors = carray(
                _bytes_at(factor_addresses[c] if has_factors else addresses[c]),
                4 * n if has_factors else 0,
            ).view(np.uint32)
            allowed, filtered = chunk_bitmap(allow_addresses, c, n, addresses[c])
            scan_range(
                corpus_flat,
                factors,
                has_factors,
                planes_flat,
                scales,
                shifts,
                alphas,
                nbytes,
                coarse,
                block_lo * SCAN_BLOCK_ROWS,
                min(n, block_hi * SCAN_BLOCK_ROWS),
                heap_keys,
                heap_ids,
                prefetch_bytes,
                id_offset,
                allowed,
                filtered,
            )
        first_block += blocks
        id_offset += n


@njit(**KERNEL)
def asymmetric_topk_serial(
    addresses,
    factor_addresses,
    rows,
    allow_addresses,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
    coarse,
    k,
    prefetch_bytes,
    out_keys,
    out_ids,
):
    """Top-k on the calling thread: ``out_keys (q, k) float32`` (negated scores, ascending) and
    ``out_ids (q, k) int64``; ``k`` at most the rows allowed (``allow_addresses``: per chunk, the address of its bitmap or 0
    for every row); no factors when ``factor_addresses`` is empty."""
    heap_keys, heap_ids = _empty_heaps(1, scales.shape[0], k)
    _scan_chunks(
        addresses,
        factor_addresses,
        rows,
        allow_addresses,
        planes_flat,
        scales,
        shifts,
        alphas,
        nbytes,
        coarse,
        0,
        1,
        heap_keys[0],
        heap_ids[0],
        prefetch_bytes,
    )
    merge_heaps(heap_keys, heap_ids, out_keys, out_ids)


@njit(**PARALLEL_KERNEL)
def asymmetric_topk_parallel(
    addresses,
    factor_addresses,
    rows,
    allow_addresses,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
    coarse,
    k,
    threads,
    prefetch_bytes,
    out_keys,
    out_ids,
):
    """``asymmetric_topk_serial`` with the blocks of all chunks split into ``threads`` runs."""
    heap_keys, heap_ids = _empty_heaps(threads, scales.shape[0], k)
    for t in prange(threads):
        _scan_chunks(
            addresses,
            factor_addresses,
            rows,
            allow_addresses,
            planes_flat,
            scales,
            shifts,
            alphas,
            nbytes,
            coarse,
            t,
            threads,
            heap_keys[t],
            heap_ids[t],
            prefetch_bytes,
        )
    merge_heaps(heap_keys, heap_ids, out_keys, out_ids)


@njit(**KERNEL)
def score_asymmetric_slots(
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
    coarse,
    bits,
    factors,
    has_factors,
    rows,
    slots,
    per_query,
    out,
):
    """Scores of (query, row) pairs, as the scan computes them, written to ``out`` by slot.

    Pair ``j`` is row ``rows[j]`` of ``bits (n, nbytes) uint8`` and query ``slots[j] //
    per_query``; ``factors (n, 2) uint16`` (ignored unless ``has_factors``); a 4-bit or
    ``coarse`` query like :func:`block_plane_totals`.
    """
    bits_flat = bits.reshape(-1)
    pairs = factors.reshape(-1).view(np.uint32)
    whole = nbytes - nbytes % 8
    weights = plane_weights(coarse)
    for j in range(rows.shape[0]):
        r = rows[j]
        qi = slots[j] // per_query
        at = r * nbytes
        t = 0
        for p in range(weights.shape[0]):
            plane = (weights.shape[0] * qi + p) * nbytes
            count = 0
            for byte in range(0, whole, 8):
                count += and_popcount_word(bits_flat, at + byte, planes_flat, plane + byte)
            for byte in range(whole, nbytes):
                count += and_popcount_byte(bits_flat, at + byte, planes_flat, plane + byte)
            t += count * weights[p]
        f, g = bfloat16_pair(pairs[r]) if has_factors else (np.float32(1.0), np.float32(0.0))
        out[slots[j]] = row_score(t, scales[qi], shifts[qi], alphas[qi], f, g)
