"""The first stage: the global Hamming top list of a chunked corpus, and exact list merging.

Each chunk's exact top list, with local ids shifted to global ones, contains every row the whole
corpus's top list takes from that chunk, in the same order; merging them by ``(key, id)``
therefore gives exactly the single-array answer, whatever the chunk size.
"""

from __future__ import annotations

import numpy as np

from .._kernels.topk import EMPTY_ID, merge_heaps
from ..backends import get_backend
from .corpus import ChunkedCorpus

#: The distance of an empty top-list slot: larger than any real one.
FAR_DISTANCE = np.iinfo(np.int32).max


def merge_sorted(
    keys: list[np.ndarray], ids: list[np.ndarray], k: int, empty_key
) -> tuple[np.ndarray, np.ndarray]:
    """Merge lists ``(q, k_i)`` sorted by ``(key, id)`` into the best ``k`` of all, same order.

    ``empty_key`` fills the slots of lists shorter than the longest (``FAR_DISTANCE`` for
    distances, ``+inf`` for negated scores); ``k`` must not exceed the entries given.
    """
    if len(keys) == 1:
        return keys[0][:, :k], ids[0][:, :k]
    width = max(part.shape[1] for part in keys)
    q = keys[0].shape[0]
    heap_keys = np.full((len(keys), q, width), empty_key, dtype=keys[0].dtype)
    heap_ids = np.full((len(keys), q, width), EMPTY_ID, dtype=np.int64)
    for c, (part_keys, part_ids) in enumerate(zip(keys, ids)):
        heap_keys[c, :, : part_keys.shape[1]] = part_keys
        heap_ids[c, :, : part_ids.shape[1]] = part_ids
    out_keys = np.empty((q, k), dtype=keys[0].dtype)
    out_ids = np.empty((q, k), dtype=np.int64)
    merge_heaps(heap_keys, heap_ids, out_keys, out_ids)
    return out_keys, out_ids


def hamming_candidates(
    corpus: ChunkedCorpus, query_bits: np.ndarray, k: int, backend: str, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Global Hamming top ``min(k, searchable rows)``: ``distances (q, k') int32`` ascending,
    ``ids (q, k') int64`` (positions), ties by ascending id.

    ``query_bits (q, ceil(dim / 8)) uint8`` packed like the corpus (signed codes flipped alike
    leave every distance unchanged). A backend with ``topk_chunks`` (numba) scans all chunks in
    one call and skips rows not allowed inside the scan; the others search each chunk for ``k``
    plus its rows not allowed, drop those, and the lists are merged.
    """
    engine = get_backend(backend)
    k = min(k, corpus.searchable_rows)
    if hasattr(engine, "topk_chunks"):
        return engine.topk_chunks(corpus.bits, query_bits, k, threads, corpus.allowed)
    dists, ids = [], []
    for c, (chunk, offset) in enumerate(zip(corpus.bits, corpus.offsets)):
        allowed_rows = corpus.chunk_allowed_rows(c)
        if allowed_rows == 0:
            continue
        blocked = chunk.shape[0] - allowed_rows
        dist, local = engine.topk(chunk, query_bits, min(k + blocked, chunk.shape[0]), threads)
        if blocked:
            dist, local = _drop_blocked(dist, local, corpus.chunk_allowed(c), min(k, allowed_rows))
        dists.append(dist)
        ids.append(local + offset)
    return merge_sorted(dists, ids, k, FAR_DISTANCE)


def _drop_blocked(
    dist: np.ndarray, local: np.ndarray, bitmap: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` allowed entries of each row of sorted lists ``dist, local (q, m)``."""
    allowed = ((bitmap[local >> 3] >> (local & 7)) & 1).astype(bool)
    order = np.argsort(~allowed, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(local, order, axis=1)


#: Rows :func:`gathered_distances` XORs at a time.
_GATHER_ROWS = 1024


def gathered_distances(
    corpus: ChunkedCorpus, query_bits: np.ndarray, positions: np.ndarray
) -> np.ndarray:
    """``(q, m) int32`` Hamming distances of ``query_bits`` to the rows at ``positions (m,)
    int64`` (ascending)."""
    out = np.empty((query_bits.shape[0], positions.size), dtype=np.int32)
    bounds = np.searchsorted(positions, corpus.offsets)
    for c, bits in enumerate(corpus.bits):
        for lo in range(bounds[c], bounds[c + 1], _GATHER_ROWS):
            hi = min(lo + _GATHER_ROWS, bounds[c + 1])
            rows = bits[positions[lo:hi] - corpus.offsets[c]]
            xor = np.bitwise_xor(query_bits[:, None, :], rows[None, :, :])
            out[:, lo:hi] = np.bitwise_count(xor).sum(axis=2, dtype=np.int32)
    return out
