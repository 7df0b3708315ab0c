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
    """Global Hamming top ``min(k, rows)``: ``distances (q, k') int32`` ascending, ``ids (q, k')
    int64``, ties by ascending id.

    ``query_bits (q, ceil(dim / 8)) uint8`` packed like the corpus (signed codes flipped alike
    leave every distance unchanged). A backend with ``topk_chunks`` (numba) scans all chunks in
    one call; the others search each chunk and the lists are merged.
    """
    engine = get_backend(backend)
    k = min(k, corpus.rows)
    if hasattr(engine, "topk_chunks"):
        return engine.topk_chunks(corpus.bits, query_bits, k, threads)
    dists, ids = [], []
    for chunk, offset in zip(corpus.bits, corpus.offsets):
        dist, local = engine.topk(chunk, query_bits, min(k, chunk.shape[0]), threads)
        dists.append(dist)
        ids.append(local + offset)
    return merge_sorted(dists, ids, k, FAR_DISTANCE)
