"""Asymmetric top-k: packed bit rows scored against 4-bit queries, corpus-parallel over chunks.

A query is given as the 6 bit-planes of its balanced-ternary digits ``planes_flat (q * 6 *
nbytes,) uint8`` (see :mod:`fastquant._kernels.bitplanes`) with per-query float32 ``scales``, ``shifts``, ``alphas``
(q,). For row bits ``b`` the kernel computes the integer ``t = sum_j w_j b_j`` of the signed
4-bit query values ``w`` and the float32 score ``s = scale * t + shift`` (an estimate of
``q' . (2b - 1)``). With row factors (``factor_addresses``: per chunk, ``(rows, 2) uint16``
bfloat16 pairs ``(f, g)``) the score is ``f * s + alpha * g`` (without, ``f = 1`` and ``g = 0``:
the same float32 operations). Every operation is a single float32 operation in this order, so
the NumPy reference reproduces each score bit for bit. Top-k keeps the highest scores, equal
scores by ascending id, as negated keys in the heaps of :mod:`fastquant._kernels.topk`.

The coarse scan (:func:`coarse_topk_serial`) ranks rows by the integer total ``t`` of a ternary
query (``COARSE_PLANES`` planes, one digit: a third of the popcounts) alone, without factors,
like a Hamming scan: exact integer keys ``-t``, a block skipped when its largest ``t`` cannot
enter, no factors read.

A row's score needs its factors, but its integer total ``t`` bounds it: with the least and
greatest factors of its chunk (:func:`factor_bounds`, computed once per map), the least total
that can beat a heap's worst key (:func:`threshold_total`) is compared with each block's largest
total, then with each row's; only rows that reach it are scored (0.1-0.3% of a million random
rows for a top 40). The factors are then read for those rows alone.

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
    bfloat16_pair,
    coarse_block_1,
    coarse_block_4,
    digit_count_byte,
    digit_count_word,
    plane_block_1,
    plane_block_4,
)
from .config import INLINE_KERNEL, KERNEL, PARALLEL_KERNEL, SCAN_BLOCK_ROWS
from .hamming import _bytes_at, chunk_view, own_spans
from .hints import prefetch_ahead, prefetch_element
from .popcount import QUERIES_PER_SCAN
from .topk import EMPTY_ID, heap_replace_root, is_allowed, merge_heaps, offer_rows

_PLANE_WEIGHTS = np.array(PLANE_WEIGHTS, dtype=np.int64)
_COARSE_WEIGHTS = np.array(COARSE_WEIGHTS, dtype=np.int64)


@njit(**INLINE_KERNEL)
def plane_weights(coarse):
    """``(planes,) int64``: the weight of each plane of a query (coarse: ternary)."""
    return _COARSE_WEIGHTS if coarse else _PLANE_WEIGHTS


@njit(**INLINE_KERNEL)
def _digit_count(a, at, planes_flat, plus, minus, byte_lo, nbytes):
    """``popcount((b AND P) OR (NOT b AND N))`` over bytes ``byte_lo`` to ``nbytes`` of the row
    ``b`` at byte ``at`` of ``a`` and the planes at bytes ``plus`` and ``minus``: whole words, then
    single bytes."""
    whole = byte_lo + (nbytes - byte_lo) // 8 * 8
    count = 0
    for byte in range(byte_lo, whole, 8):
        count += digit_count_word(a, at + byte, planes_flat, plus + byte, minus + byte)
    for byte in range(whole, nbytes):
        count += digit_count_byte(a, at + byte, planes_flat, plus + byte, minus + byte)
    return count


@njit(**KERNEL)
def digit_offset(planes_flat, first_plane, nbytes, weights, byte_lo):
    """``sum_k 3^k popcount(N_k)`` over bytes ``byte_lo`` to ``nbytes`` of the query whose planes
    start at byte ``first_plane``: what its raw totals (:mod:`fastquant._kernels.bitplanes`) over
    those bytes exceed its totals by."""
    offset = 0
    for p in range(1, weights.shape[0], 2):
        minus = first_plane + p * nbytes
        # (N AND N) OR (NOT N AND N) = N: the digit count of N against itself is popcount(N).
        count = _digit_count(planes_flat, minus, planes_flat, minus, minus, byte_lo, nbytes)
        offset += weights[p - 1] * count
    return offset


@njit(**INLINE_KERNEL)
def raw_total(bits_flat, at, planes_flat, first_plane, nbytes, weights, byte_lo):
    """Raw total of the row at byte ``at`` and the query at ``first_plane``, over bytes
    ``byte_lo`` to ``nbytes``."""
    total = 0
    for p in range(0, weights.shape[0], 2):
        plus, minus = first_plane + p * nbytes, first_plane + (p + 1) * nbytes
        total += weights[p] * _digit_count(bits_flat, at, planes_flat, plus, minus, byte_lo, nbytes)
    return total


@njit(**KERNEL)
def block_plane_totals(
    corpus_flat, planes_flat, nbytes, coarse, row_lo, row_hi, q_lo, q_hi, totals, maxima,
    prefetch_bytes,
):  # fmt: skip
    """``totals[j * SCAN_BLOCK_ROWS + r - row_lo]``: ``t`` of row ``r`` and query ``q_lo + j``
    (4-bit, or ternary if ``coarse``), trailing bytes (``nbytes % 8``) included; ``maxima[j]``
    the largest ``t`` of query ``q_lo + j``."""
    weights = plane_weights(coarse)
    stride = weights.shape[0] * nbytes
    if q_hi - q_lo == QUERIES_PER_SCAN:
        q_off = q_lo * stride
        if coarse:
            largest = coarse_block_4(
                corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, 0, prefetch_bytes
            )
        else:
            largest = plane_block_4(
                corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, 0, prefetch_bytes
            )
        for j in range(QUERIES_PER_SCAN):
            maxima[j] = largest[j]
    else:
        for qi in range(q_lo, q_hi):
            q_off, col = qi * stride, qi - q_lo
            if coarse:
                maxima[col] = coarse_block_1(
                    corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, col,
                    prefetch_bytes,
                )  # fmt: skip
            else:
                maxima[col] = plane_block_1(
                    corpus_flat, row_lo, row_hi, nbytes, planes_flat, q_off, totals, col,
                    prefetch_bytes,
                )  # fmt: skip
    first_tail_byte = nbytes - nbytes % 8
    if first_tail_byte == nbytes:
        return
    for qi in range(q_lo, q_hi):
        first_plane = qi * stride
        offset = digit_offset(planes_flat, first_plane, nbytes, weights, first_tail_byte)
        column = (qi - q_lo) * SCAN_BLOCK_ROWS
        largest = _EVERY_ROW
        for r in range(row_lo, row_hi):
            slot = column + r - row_lo
            tail = raw_total(
                corpus_flat, r * nbytes, planes_flat, first_plane, nbytes, weights, first_tail_byte
            )
            totals[slot] += tail - offset
            largest = max(largest, totals[slot])
        maxima[qi - q_lo] = largest


@njit(**INLINE_KERNEL)
def row_score(t, scale, shift, alpha, f, g):
    """Score of a row with integer plane total ``t`` and factors ``f, g``."""
    return f * (scale * np.float32(t) + shift) + alpha * g


@njit(**KERNEL)
def factor_bounds(pairs):
    """``(4,) float64``: least and greatest ``f``, least and greatest ``g`` of the bfloat16 pairs
    ``pairs (n,) uint32``; NaN if there are none or one is not finite."""
    bounds = np.full(4, np.nan)
    if pairs.shape[0] == 0:
        return bounds
    f_lo, g_lo = bfloat16_pair(pairs[0])
    f_hi, g_hi = f_lo, g_lo
    for i in range(pairs.shape[0]):
        f, g = bfloat16_pair(pairs[i])
        if not (np.isfinite(f) and np.isfinite(g)):
            return bounds
        f_lo, f_hi = min(f_lo, f), max(f_hi, f)
        g_lo, g_hi = min(g_lo, g), max(g_hi, g)
    bounds[0], bounds[1], bounds[2], bounds[3] = f_lo, f_hi, g_lo, g_hi
    return bounds


#: Relative margin of :func:`threshold_total`'s bound: over 100 times the rounding error of the
#: five float32 operations of a score (each within ``2**-24``).
_ROUNDING_MARGIN = 1e-5
#: Plane totals of no row reach this (every row is offered).
_EVERY_ROW = np.int32(np.iinfo(np.int32).min)


@njit(**KERNEL)
def threshold_total(worst, scale, shift, alpha, bounds, most):
    """The least plane total ``t`` (``int32``) of a row that can score above ``-worst``, for rows
    whose factors lie within ``bounds`` (:func:`factor_bounds`) and totals within ``+-most``.

    A row's float32 score is at most ``u(t) = max(f) * s + max(alpha * g) + margin`` (``min(f)``
    when ``s = scale * t + shift < 0``), the margin covering float32 rounding many times over; ``u``
    grows with ``t``, so a row below the threshold has a key (``-score``) at least ``worst`` and
    cannot enter a heap whose worst key is ``worst``. ``_EVERY_ROW`` when there is no such bound
    (a heap not yet full, bounds not finite, ``scale <= 0``).
    """
    if not (worst < np.inf and scale > 0 and np.isfinite(bounds[0])):
        return _EVERY_ROW
    f_lo, f_hi, g_lo, g_hi = bounds[0], bounds[1], bounds[2], bounds[3]
    scale, shift, alpha = np.float64(scale), np.float64(shift), np.float64(alpha)
    largest = max(abs(f_lo), abs(f_hi))
    constant = max(alpha * g_lo, alpha * g_hi) + _ROUNDING_MARGIN * (
        largest * (scale * most + abs(shift)) + abs(alpha) * max(abs(g_lo), abs(g_hi))
    )
    beaten = -np.float64(worst)
    lo, hi = -most, most + 1
    # Binary search for the least t in [lo, hi] with u(t) > beaten (hi: none does).
    while lo < hi:
        t = (lo + hi) // 2
        s = scale * t + shift
        if (f_hi * s if s >= 0 else f_lo * s) + constant > beaten:
            hi = t
        else:
            lo = t + 1
    return np.int32(lo) if lo > -most else _EVERY_ROW


@njit(**KERNEL)
def rows_reaching(totals, threshold, flags):
    """``flags (m,) uint8``: whether each of ``totals (m,) int32`` is at least ``threshold``."""
    for i in range(totals.shape[0]):
        flags[i] = totals[i] >= threshold


@njit(**INLINE_KERNEL)
def _offer_held(
    heap, ids, held_rows, held_totals, first, count, factors, has_factors, scale, shift, alpha,
    id_offset, allowed, filtered,
):  # fmt: skip
    """Score the ``count`` rows held at ``first`` (ascending) and offer them to one heap."""
    one, zero = np.float32(1.0), np.float32(0.0)
    worst = heap[0]
    for i in range(first, first + count):
        r = held_rows[i]
        f, g = bfloat16_pair(factors[r]) if has_factors else (one, zero)
        key = -row_score(held_totals[i], scale, shift, alpha, f, g)
        # Rows arrive in ascending id, so an equal key never displaces a kept row.
        if key < worst and is_allowed(allowed, filtered, r):
            heap_replace_root(heap, ids, key, r + id_offset)
            worst = heap[0]


@njit(**KERNEL)
def scan_range(
    corpus_flat,
    factors,
    has_factors,
    bounds,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
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
    :func:`~fastquant._kernels.hamming.is_allowed`); ``bounds``: the rows' :func:`factor_bounds`.

    A block's integer plane totals are first compared with the least total that can beat the
    heap's worst key (:func:`threshold_total`, recomputed when that key changes); only rows at or
    above it are scored. They are held until the next block's totals are counted, while their
    factors, scattered and rarely cached, are fetched (``prefetch_element``), then offered in
    ascending id. A threshold set before they are offered is only lower than needed.
    """
    nq = heap_keys.shape[0]
    totals = np.empty(QUERIES_PER_SCAN * SCAN_BLOCK_ROWS, dtype=np.int32)
    maxima = np.empty(QUERIES_PER_SCAN, dtype=np.int32)
    reaching = np.zeros(SCAN_BLOCK_ROWS, dtype=np.uint8)
    flag_words = reaching.view(np.uint64)
    held_rows = np.empty(nq * SCAN_BLOCK_ROWS, dtype=np.int64)
    held_totals = np.empty(nq * SCAN_BLOCK_ROWS, dtype=np.int32)
    held = np.zeros(nq, dtype=np.int64)
    thresholds = np.full(nq, _EVERY_ROW, dtype=np.int32)
    threshold_worst = np.full(nq, np.nan, dtype=np.float32)
    most = np.int64(64) * nbytes  # |t| <= 8 * bits: query values lie in -8..7
    for block_lo in range(row_lo, row_hi, SCAN_BLOCK_ROWS):
        block_hi = min(block_lo + SCAN_BLOCK_ROWS, row_hi)
        m = block_hi - block_lo
        for q_lo in range(0, nq, QUERIES_PER_SCAN):
            q_hi = min(q_lo + QUERIES_PER_SCAN, nq)
            block_plane_totals(
                corpus_flat, planes_flat, nbytes, False, block_lo, block_hi, q_lo, q_hi, totals,
                maxima, prefetch_bytes,
            )  # fmt: skip
            for qi in range(q_lo, q_hi):
                heap = heap_keys[qi]
                first = qi * SCAN_BLOCK_ROWS
                if held[qi]:
                    _offer_held(
                        heap, heap_ids[qi], held_rows, held_totals, first, held[qi], factors,
                        has_factors, scales[qi], shifts[qi], alphas[qi], id_offset, allowed,
                        filtered,
                    )  # fmt: skip
                    held[qi] = 0
                worst = heap[0]
                if worst != threshold_worst[qi]:
                    thresholds[qi] = threshold_total(
                        worst, scales[qi], shifts[qi], alphas[qi], bounds, most
                    )
                    threshold_worst[qi] = worst
                if maxima[qi - q_lo] < thresholds[qi]:
                    continue
                column = (qi - q_lo) * SCAN_BLOCK_ROWS
                block_totals = totals[column : column + m]
                rows_reaching(block_totals, thresholds[qi], reaching[:m])
                count = 0
                for w in range((m + 7) // 8):  # eight flags a word
                    if flag_words[w] == 0:
                        continue
                    for i in range(8 * w, min(m, 8 * w + 8)):
                        if reaching[i]:
                            held_rows[first + count] = block_lo + i
                            held_totals[first + count] = block_totals[i]
                            if has_factors:
                                prefetch_element(factors, block_lo + i)
                            count += 1
                held[qi] = count
    for qi in range(nq):
        if held[qi]:
            _offer_held(
                heap_keys[qi], heap_ids[qi], held_rows, held_totals, qi * SCAN_BLOCK_ROWS,
                held[qi], factors, has_factors, scales[qi], shifts[qi], alphas[qi], id_offset,
                allowed, filtered,
            )  # fmt: skip


@njit(**KERNEL)
def coarse_range(
    corpus_flat, planes_flat, nbytes, row_lo, row_hi, heap_keys, heap_ids, prefetch_bytes,
    id_offset, allowed, filtered,
):  # fmt: skip
    """Offer rows ``[row_lo, row_hi)`` as ids ``id_offset + row`` to every ternary query's heap
    ``(q, k) int32`` of keys ``-t``, those allowed only."""
    nq = heap_keys.shape[0]
    totals = np.empty(QUERIES_PER_SCAN * SCAN_BLOCK_ROWS, dtype=np.int32)
    maxima = np.empty(QUERIES_PER_SCAN, dtype=np.int32)
    for block_lo in range(row_lo, row_hi, SCAN_BLOCK_ROWS):
        block_hi = min(block_lo + SCAN_BLOCK_ROWS, row_hi)
        for q_lo in range(0, nq, QUERIES_PER_SCAN):
            q_hi = min(q_lo + QUERIES_PER_SCAN, nq)
            block_plane_totals(
                corpus_flat, planes_flat, nbytes, True, block_lo, block_hi, q_lo, q_hi, totals,
                maxima, prefetch_bytes,
            )  # fmt: skip
            for qi in range(q_lo, q_hi):
                if -maxima[qi - q_lo] >= heap_keys[qi, 0]:
                    continue
                offer_rows(
                    heap_keys[qi], heap_ids[qi], totals, (qi - q_lo) * SCAN_BLOCK_ROWS, 1, True,
                    block_lo, block_hi, id_offset, allowed, filtered,
                )  # fmt: skip


@njit(**KERNEL)
def _empty_heaps(threads, nq, k):
    keys = np.full((threads, nq, k), np.inf, dtype=np.float32)
    ids = np.full((threads, nq, k), EMPTY_ID, dtype=np.int64)
    return keys, ids


@njit(**KERNEL)
def _chunk_factors(factor_addresses, addresses, rows, c):
    """Chunk ``c``'s factors ``(n,) uint32`` (bfloat16 pairs); empty when ``factor_addresses``
    is."""
    has_factors = factor_addresses.shape[0] > 0
    return carray(
        _bytes_at(factor_addresses[c] if has_factors else addresses[c]),
        4 * rows[c] if has_factors else 0,
    ).view(np.uint32)


@njit(**KERNEL)
def _scan_chunks(
    addresses,
    factor_addresses,
    factor_bounds_of,
    rows,
    allow_addresses,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
    part,
    parts,
    heap_keys,
    heap_ids,
    prefetch_bytes,
):
    """Scan share ``part`` of ``parts`` of all chunks' blocks, in order, into one set of heaps."""
    has_factors = factor_addresses.shape[0] > 0
    for span in own_spans(rows, part, parts):
        c, lo, hi, id_offset = span[0], span[1], span[2], span[3]
        corpus_flat, allowed, filtered = chunk_view(addresses, allow_addresses, rows, nbytes, c)
        scan_range(
            corpus_flat, _chunk_factors(factor_addresses, addresses, rows, c), has_factors,
            factor_bounds_of[c], planes_flat, scales, shifts, alphas, nbytes, lo, hi, heap_keys,
            heap_ids, prefetch_bytes, id_offset, allowed, filtered,
        )  # fmt: skip


@njit(**KERNEL)
def asymmetric_topk_serial(
    addresses,
    factor_addresses,
    factor_bounds_of,
    rows,
    allow_addresses,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
    k,
    prefetch_bytes,
    out_keys,
    out_ids,
):
    """Top-k on the calling thread: ``out_keys (q, k) float32`` (negated scores, ascending) and
    ``out_ids (q, k) int64``; ``k`` at most the rows allowed (``allow_addresses``: per chunk, the
    address of its bitmap or 0 for every row); no factors when ``factor_addresses`` is empty.
    ``factor_bounds_of (chunks, 4) float64``: each chunk's :func:`factor_bounds` (``1, 1, 0, 0``
    without factors)."""
    heap_keys, heap_ids = _empty_heaps(1, scales.shape[0], k)
    _scan_chunks(
        addresses, factor_addresses, factor_bounds_of, rows, allow_addresses, planes_flat, scales,
        shifts, alphas, nbytes, 0, 1, heap_keys[0], heap_ids[0], prefetch_bytes,
    )  # fmt: skip
    merge_heaps(heap_keys, heap_ids, out_keys, out_ids)


@njit(**PARALLEL_KERNEL)
def asymmetric_topk_parallel(
    addresses,
    factor_addresses,
    factor_bounds_of,
    rows,
    allow_addresses,
    planes_flat,
    scales,
    shifts,
    alphas,
    nbytes,
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
            addresses, factor_addresses, factor_bounds_of, rows, allow_addresses, planes_flat,
            scales, shifts, alphas, nbytes, t, threads, heap_keys[t], heap_ids[t], prefetch_bytes,
        )  # fmt: skip
    merge_heaps(heap_keys, heap_ids, out_keys, out_ids)


#: Key of an empty coarse heap slot: above every ``-t``.
_FAR_KEY = np.iinfo(np.int32).max


@njit(**KERNEL)
def _coarse_chunks(
    addresses, rows, allow_addresses, planes_flat, nbytes, part, parts, heap_keys, heap_ids,
    prefetch_bytes,
):  # fmt: skip
    """:func:`coarse_range` over share ``part`` of ``parts`` of all chunks' blocks, in order."""
    for span in own_spans(rows, part, parts):
        c, lo, hi, id_offset = span[0], span[1], span[2], span[3]
        corpus_flat, allowed, filtered = chunk_view(addresses, allow_addresses, rows, nbytes, c)
        coarse_range(
            corpus_flat, planes_flat, nbytes, lo, hi, heap_keys, heap_ids, prefetch_bytes,
            id_offset, allowed, filtered,
        )  # fmt: skip


@njit(**KERNEL)
def coarse_topk_serial(
    addresses, rows, allow_addresses, planes_flat, nbytes, k, prefetch_bytes, out_keys, out_ids
):  # fmt: skip
    """Coarse top-k on the calling thread: ``out_keys (q, k) int32``, ``-t`` of the ternary
    queries ``planes_flat`` (ascending, ties by ascending id), and ``out_ids (q, k) int64``;
    ``k`` at most the rows allowed."""
    heap_keys = np.full((1, out_keys.shape[0], k), _FAR_KEY, dtype=np.int32)
    heap_ids = np.full((1, out_keys.shape[0], k), EMPTY_ID, dtype=np.int64)
    _coarse_chunks(
        addresses, rows, allow_addresses, planes_flat, nbytes, 0, 1, heap_keys[0], heap_ids[0],
        prefetch_bytes,
    )  # fmt: skip
    merge_heaps(heap_keys, heap_ids, out_keys, out_ids)


@njit(**PARALLEL_KERNEL)
def coarse_topk_parallel(
    addresses, rows, allow_addresses, planes_flat, nbytes, k, threads, prefetch_bytes, out_keys,
    out_ids,
):  # fmt: skip
    """``coarse_topk_serial`` with the blocks of all chunks split into ``threads`` runs."""
    heap_keys = np.full((threads, out_keys.shape[0], k), _FAR_KEY, dtype=np.int32)
    heap_ids = np.full((threads, out_keys.shape[0], k), EMPTY_ID, dtype=np.int64)
    for t in prange(threads):
        _coarse_chunks(
            addresses, rows, allow_addresses, planes_flat, nbytes, t, threads, heap_keys[t],
            heap_ids[t], prefetch_bytes,
        )  # fmt: skip
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
    """Scores of (query, row) pairs, as the scans compute them, written to ``out`` by slot.

    Pair ``j`` is row ``rows[j]`` of ``bits (n, nbytes) uint8`` and query ``slots[j] //
    per_query``; ``factors (n, 2) uint16`` (ignored unless ``has_factors``). A 4-bit query gives
    the score :func:`scan_range` ranks by; a ``coarse`` (ternary) one, ``scales`` and ``shifts``
    unused, the total ``t`` :func:`coarse_range` ranks by. Rows sorted ascending read the maps in
    order; the rows ``RESCORE_PREFETCH_ROWS`` ahead are requested while a row is scored.
    """
    bits_flat = bits.reshape(-1)
    pairs = factors.reshape(-1).view(np.uint32)
    weights = plane_weights(coarse)
    stride = weights.shape[0] * nbytes
    offsets = np.empty(alphas.shape[0], dtype=np.int64)
    for qi in range(offsets.shape[0]):
        offsets[qi] = digit_offset(planes_flat, qi * stride, nbytes, weights, 0)
    for j in range(rows.shape[0]):
        prefetch_ahead(bits, rows, j)
        if has_factors and not coarse:
            prefetch_ahead(factors, rows, j)
        r = rows[j]
        qi = slots[j] // per_query
        t = raw_total(bits_flat, r * nbytes, planes_flat, qi * stride, nbytes, weights, 0)
        t -= offsets[qi]
        if coarse:
            out[slots[j]] = np.float32(t)
            continue
        f, g = bfloat16_pair(pairs[r]) if has_factors else (np.float32(1.0), np.float32(0.0))
        out[slots[j]] = row_score(t, scales[qi], shifts[qi], alphas[qi], f, g)
