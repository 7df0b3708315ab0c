"""Bounded top-k heaps ordered by ``(key, id)`` and their merge.

A heap is a pair of 1-D arrays ``keys (k,)`` and ``ids (k,) int64`` holding a max-heap on
``(key, id)``: the root is the worst kept entry, so a scan keeps the k smallest keys and,
among equal keys, the smallest ids. Distances are keys as they are; scores are keys negated.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .config import INLINE_KERNEL, KERNEL

#: Id of an empty heap slot: larger than any real id, so it sorts last among equal keys.
EMPTY_ID = np.iinfo(np.int64).max


@njit(**INLINE_KERNEL)
def _worse(key_a, id_a, key_b, id_b):
    """True when ``(key_a, id_a)`` ranks after ``(key_b, id_b)``."""
    return key_a > key_b or (key_a == key_b and id_a > id_b)


@njit(**INLINE_KERNEL)
def is_allowed(allowed, filtered, r):
    """Whether row ``r`` may enter a heap: always, or with ``filtered`` when it is set in the
    bitmap ``allowed (ceil(n / 8),) uint8`` (bit ``r & 7`` of byte ``r >> 3``)."""
    return not filtered or (allowed[r >> 3] >> (r & 7)) & 1


@njit(**INLINE_KERNEL)
def heap_replace_root(keys, ids, key, idx):
    """Put ``(key, idx)`` in place of the root of the max-heap and sift it down."""
    size = keys.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(keys[right], ids[right], keys[child], ids[child]):
            child = right
        if not _worse(keys[child], ids[child], key, idx):
            break
        keys[pos] = keys[child]
        ids[pos] = ids[child]
        pos = child
    keys[pos] = key
    ids[pos] = idx


@njit(**INLINE_KERNEL)
def offer_rows(
    keys, ids, values, first, stride, negate, row_lo, row_hi, id_offset, allowed, filtered
):
    """Offer rows ``[row_lo, row_hi)`` to the heap ``keys, ids`` as ids ``id_offset + r``, row
    ``r``'s key ``values[first + stride * (r - row_lo)]`` (negated with ``negate``), those
    ``is_allowed`` only. Rows arrive in ascending id, so an equal key never displaces a kept row."""
    worst = keys[0]
    for r in range(row_lo, row_hi):
        key = values[first + stride * (r - row_lo)]
        if negate:
            key = -key
        if key < worst and is_allowed(allowed, filtered, r):
            heap_replace_root(keys, ids, key, r + id_offset)
            worst = keys[0]


@njit(**KERNEL)
def sort_pairs(keys, ids, out_keys, out_ids):
    """Write the ``len(out_keys)`` best ``(key, id)`` pairs of ``keys, ids (m,)`` in ascending order."""
    by_id = np.argsort(ids, kind="mergesort")
    order = by_id[np.argsort(keys[by_id], kind="mergesort")]
    for j in range(out_keys.shape[0]):
        out_keys[j] = keys[order[j]]
        out_ids[j] = ids[order[j]]


@njit(**KERNEL)
def merge_heaps(heap_keys, heap_ids, out_keys, out_ids):
    """Merge per-thread heaps ``(t, q, k)`` into sorted ``out_keys, out_ids (q, k')``, ``k' <= k``."""
    threads, nq, k = heap_keys.shape
    for qi in range(nq):
        sort_pairs(
            heap_keys[:, qi, :].copy().reshape(threads * k),
            heap_ids[:, qi, :].copy().reshape(threads * k),
            out_keys[qi],
            out_ids[qi],
        )
