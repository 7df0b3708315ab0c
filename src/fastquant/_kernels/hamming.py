"""Exact Hamming top-k over packed bit rows: corpus-parallel, query-blocked, two-pass blocks.

The corpus is one or more chunks of rows (a store's chunk files, or one array), given by their
base addresses ``(c,) int64`` and row counts ``(c,) int64``; ids are global, chunk after chunk.
Queries are a flat ``queries_flat (q * nbytes,) uint8``. In every chunk each thread scans its own
contiguous range of rows in blocks of ``SCAN_BLOCK_ROWS``; for every block it writes the
distances of four queries at a time into a small buffer, then offers a query's block to its heap
only if the block's minimum beats the heap's worst entry. Per-thread heaps live across chunks and
are merged at the end, so the whole corpus is one parallel region, one query uses every thread,
and the result (ascending distance, ties by ascending id) depends neither on the thread count
nor on how the rows are chunked. A chunk may come with a bitmap of the rows allowed into the
heaps (``allow_addresses``: 0 for none; bit ``r & 7`` of byte ``r >> 3``): deleted or filtered
rows are scanned but never kept. Callers keep the chunk arrays alive during a call.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.extending import intrinsic

from .config import KERNEL, PARALLEL_KERNEL, SCAN_BLOCK_ROWS
from .popcount import QUERIES_PER_SCAN, scan_block_1, scan_block_4, xor_popcount_byte
from .topk import EMPTY_ID, merge_heaps, offer_rows

_FAR = np.iinfo(np.int32).max


@njit(**KERNEL)
def block_distances(
    corpus_flat, queries_flat, nbytes, row_lo, row_hi, q_lo, q_hi, dist, minima, prefetch_bytes
):
    """Set ``dist[4 * (r - row_lo) + j]`` to the distance of row ``r`` to query ``q_lo + j``.

    ``minima[j]`` receives a lower bound of query ``q_lo + j``'s smallest distance in the block
    (exact when ``nbytes % 8 == 0``; trailing bytes are added to ``dist`` afterwards).
    """
    if q_hi - q_lo == QUERIES_PER_SCAN:
        minima[0], minima[1], minima[2], minima[3] = scan_block_4(
            corpus_flat,
            row_lo,
            row_hi,
            nbytes,
            queries_flat,
            q_lo * nbytes,
            dist,
            0,
            prefetch_bytes,
        )
    else:
        for qi in range(q_lo, q_hi):
            minima[qi - q_lo] = scan_block_1(
                corpus_flat,
                row_lo,
                row_hi,
                nbytes,
                queries_flat,
                qi * nbytes,
                dist,
                qi - q_lo,
                prefetch_bytes,
            )
    first_tail_byte = nbytes - nbytes % 8
    if first_tail_byte == nbytes:
        return
    for r in range(row_lo, row_hi):
        for qi in range(q_lo, q_hi):
            extra = 0
            for byte in range(first_tail_byte, nbytes):
                extra += xor_popcount_byte(
                    corpus_flat, r * nbytes + byte, queries_flat, qi * nbytes + byte
                )
            dist[QUERIES_PER_SCAN * (r - row_lo) + qi - q_lo] += extra


@njit(**KERNEL)
def scan_range(
    corpus_flat,
    queries_flat,
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
    """Offer corpus rows ``[row_lo, row_hi)`` as ids ``id_offset + row`` to the heaps ``(q, k)``
    of every query, those ``is_allowed`` only."""
    nq = heap_keys.shape[0]
    dist = np.empty(QUERIES_PER_SCAN * SCAN_BLOCK_ROWS, dtype=np.int32)
    minima = np.empty(QUERIES_PER_SCAN, dtype=np.int32)
    for block_lo in range(row_lo, row_hi, SCAN_BLOCK_ROWS):
        block_hi = min(block_lo + SCAN_BLOCK_ROWS, row_hi)
        for q_lo in range(0, nq, QUERIES_PER_SCAN):
            q_hi = min(q_lo + QUERIES_PER_SCAN, nq)
            block_distances(
                corpus_flat,
                queries_flat,
                nbytes,
                block_lo,
                block_hi,
                q_lo,
                q_hi,
                dist,
                minima,
                prefetch_bytes,
            )
            for qi in range(q_lo, q_hi):
                if minima[qi - q_lo] >= heap_keys[qi, 0]:
                    continue
                offer_rows(
                    heap_keys[qi], heap_ids[qi], dist, qi - q_lo, QUERIES_PER_SCAN, False,
                    block_lo, block_hi, id_offset, allowed, filtered,
                )  # fmt: skip


@njit(**KERNEL)
def _empty_heaps(threads, nq, k):
    keys = np.full((threads, nq, k), _FAR, dtype=np.int32)
    ids = np.full((threads, nq, k), EMPTY_ID, dtype=np.int64)
    return keys, ids


def addresses_of(arrays) -> np.ndarray:
    """``(len(arrays),) int64``: the data address of each C-contiguous array, 0 for None, for
    kernels that take arrays by address (``_bytes_at``); the caller keeps the arrays alive."""
    return np.array([0 if a is None else a.ctypes.data for a in arrays], dtype=np.int64)


@intrinsic
def _bytes_at(typingctx, address):
    """The ``uint8`` pointer at integer ``address``, for ``numba.carray``."""
    sig = types.CPointer(types.uint8)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


@njit(**KERNEL)
def own_spans(rows, part, parts):
    """``(m, 4) int64``: the chunk, first and last row (exclusive) and id offset of each piece of
    share ``part`` of ``parts`` of the blocks of chunks of ``rows`` rows, all numbered one after
    the other, in order. The runs are equal, so threads stay balanced however small the chunks
    are, and each sees its rows in ascending id."""
    total_blocks = 0
    for c in range(rows.shape[0]):
        total_blocks += (rows[c] + SCAN_BLOCK_ROWS - 1) // SCAN_BLOCK_ROWS
    own_lo, own_hi = total_blocks * part // parts, total_blocks * (part + 1) // parts
    spans = np.empty((rows.shape[0], 4), dtype=np.int64)
    m, first_block, id_offset = 0, 0, 0
    for c in range(rows.shape[0]):
        blocks = (rows[c] + SCAN_BLOCK_ROWS - 1) // SCAN_BLOCK_ROWS
        block_lo = max(own_lo, first_block) - first_block
        block_hi = min(own_hi, first_block + blocks) - first_block
        if block_hi > block_lo:
            spans[m, 0], spans[m, 3] = c, id_offset
            spans[m, 1] = block_lo * SCAN_BLOCK_ROWS
            spans[m, 2] = min(rows[c], block_hi * SCAN_BLOCK_ROWS)
            m += 1
        first_block += blocks
        id_offset += rows[c]
    return spans[:m]


@njit(**KERNEL)
def chunk_view(addresses, allow_addresses, rows, nbytes, c):
    """Chunk ``c``'s bits ``(n * nbytes,) uint8``, its bitmap of allowed rows and whether it has
    one (without one, an empty array)."""
    n = rows[c]
    filtered = allow_addresses[c] != 0
    bitmap = carray(
        _bytes_at(allow_addresses[c] if filtered else addresses[c]), (n + 7) // 8 if filtered else 0
    )
    return carray(_bytes_at(addresses[c]), n * nbytes), bitmap, filtered


@njit(**KERNEL)
def _scan_chunks(
    addresses,
    rows,
    allow_addresses,
    queries_flat,
    nbytes,
    part,
    parts,
    heap_keys,
    heap_ids,
    prefetch_bytes,
):
    """Scan share ``part`` of ``parts`` of all chunks' blocks (:func:`own_spans`), in order, into
    one set of heaps."""
    for span in own_spans(rows, part, parts):
        c, row_lo, row_hi, id_offset = span[0], span[1], span[2], span[3]
        corpus_flat, allowed, filtered = chunk_view(addresses, allow_addresses, rows, nbytes, c)
        scan_range(
            corpus_flat, queries_flat, nbytes, row_lo, row_hi, heap_keys, heap_ids, prefetch_bytes,
            id_offset, allowed, filtered,
        )  # fmt: skip


@njit(**KERNEL)
def hamming_topk_serial(
    addresses, rows, allow_addresses, queries_flat, nbytes, k, prefetch_bytes, out_dist, out_ids
):
    """Top-k on the calling thread into ``out_dist (q, k) int32, out_ids (q, k) int64``; ``k``
    at most the rows allowed."""
    nq = queries_flat.shape[0] // nbytes
    heap_keys, heap_ids = _empty_heaps(1, nq, k)
    _scan_chunks(
        addresses,
        rows,
        allow_addresses,
        queries_flat,
        nbytes,
        0,
        1,
        heap_keys[0],
        heap_ids[0],
        prefetch_bytes,
    )
    merge_heaps(heap_keys, heap_ids, out_dist, out_ids)


@njit(**PARALLEL_KERNEL)
def hamming_topk_parallel(
    addresses,
    rows,
    allow_addresses,
    queries_flat,
    nbytes,
    k,
    threads,
    prefetch_bytes,
    out_dist,
    out_ids,
):
    """Top-k with every chunk split into ``threads`` contiguous ranges, one per thread."""
    nq = queries_flat.shape[0] // nbytes
    heap_keys, heap_ids = _empty_heaps(threads, nq, k)
    for t in prange(threads):
        _scan_chunks(
            addresses,
            rows,
            allow_addresses,
            queries_flat,
            nbytes,
            t,
            threads,
            heap_keys[t],
            heap_ids[t],
            prefetch_bytes,
        )
    merge_heaps(heap_keys, heap_ids, out_dist, out_ids)
