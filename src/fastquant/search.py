"""Search over a chunked corpus: binary scan, global candidate merge, rescoring, top k.

Every function works on the chunks of one store snapshot: ``bit_chunks`` holds ``(rows_c,
ceil(d / 8)) uint8`` arrays, ``code_chunks`` the matching memory-mapped ``(rows_c, d) int8``
codes, and ``offsets (chunks + 1,) int64`` the global id of each chunk's first row (then the
total). Each chunk's exact top list, with local ids shifted to global ones, contains every row
the whole corpus's top list takes from that chunk, in the same order; merging them by
``(key, id)`` therefore gives exactly the single-array answer, whatever the chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._kernels import rescore as rescore_kernels
from ._kernels.topk import EMPTY_ID, merge_heaps
from .backends import get_backend
from .quantize import Calibration
from .rescore import int8_topk, prepare_queries, query_totals, top_by_score
from .store.files import MappedRows

FAR_DISTANCE = np.iinfo(np.int32).max


def merge_sorted(
    keys: list[np.ndarray], ids: list[np.ndarray], k: int, empty_key
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-chunk ``(q, k_c)`` lists sorted by ``(key, id)`` into the best ``k`` of all."""
    if len(keys) == 1:
        return keys[0], ids[0]
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
    bit_chunks: Sequence[np.ndarray],
    offsets: np.ndarray,
    query_bits: np.ndarray,
    k: int,
    backend: str,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Global Hamming top ``min(k, n)``: ``distances (q, k') int32`` ascending, ``ids (q, k') int64``.

    A backend with ``topk_chunks`` (numba) scans all chunks in one call; others search each chunk
    and the lists are merged.
    """
    engine = get_backend(backend)
    k = min(k, int(offsets[-1]))
    if hasattr(engine, "topk_chunks"):
        return engine.topk_chunks(bit_chunks, query_bits, k, threads)
    dists, ids = [], []
    for chunk, offset in zip(bit_chunks, offsets):
        dist, local = engine.topk(chunk, query_bits, min(k, chunk.shape[0]), threads)
        dists.append(dist)
        ids.append(local + offset)
    return merge_sorted(dists, ids, k, FAR_DISTANCE)


def chunk_segments(candidates: np.ndarray, offsets: np.ndarray):
    """Yield ``(chunk, local_rows, slots)``: every candidate, chunk by chunk, rows in file order.

    ``slots`` index ``candidates.reshape(-1)``; ids outside ``[0, offsets[-1])`` are left out.
    """
    flat = candidates.reshape(-1)
    slots = np.argsort(flat, kind="stable")
    rows = flat[slots]
    bounds = np.searchsorted(rows, offsets)
    for c in range(len(offsets) - 1):
        lo, hi = bounds[c], bounds[c + 1]
        if hi > lo:
            yield c, rows[lo:hi] - offsets[c], slots[lo:hi]


def score_int8_chunks(
    queries: np.ndarray,
    code_chunks: Sequence[MappedRows],
    offsets: np.ndarray,
    calibration: Calibration,
    candidates: np.ndarray,
    *,
    prefetch: bool = True,
) -> np.ndarray:
    """Scores ``(q, c) float32`` of ``candidates (q, c) int64`` global ids with dequantized codes.

    Ids outside ``[0, offsets[-1])`` are skipped (their scores are undefined). With ``prefetch``,
    each chunk's candidate pages are announced to the OS (``madvise``) before any is read, so rows
    not in memory are fetched together rather than one fault at a time.
    """
    scaled, constants = prepare_queries(queries, calibration)
    scores = np.empty(candidates.shape, dtype=np.float32)
    for c, rows, slots in chunk_segments(candidates, offsets):
        if prefetch:
            code_chunks[c].prefetch(rows)
        rescore_kernels.score_int8_slots(
            scaled,
            constants,
            code_chunks[c].array,
            rows,
            slots,
            candidates.shape[1],
            scores.reshape(-1),
        )
    return scores


def rescore_int8_chunks(
    queries: np.ndarray,
    code_chunks: Sequence[MappedRows],
    offsets: np.ndarray,
    calibration: Calibration,
    candidates: np.ndarray,
    k: int,
    *,
    prefetch: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescore ``candidates (q, c) int64`` with :func:`score_int8_chunks`; keep the best ``k``."""
    scores = score_int8_chunks(
        queries, code_chunks, offsets, calibration, candidates, prefetch=prefetch
    )
    return top_by_score(scores, candidates, min(k, candidates.shape[1]))


def rescore_bit_chunks(
    queries: np.ndarray,
    bit_chunks: Sequence[np.ndarray],
    offsets: np.ndarray,
    candidates: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescore ``candidates (q, c) int64`` as ``q . (2b - 1)`` (BPR) from the packed bits."""
    totals = query_totals(queries)
    scores = np.empty(candidates.shape, dtype=np.float32)
    for c, rows, slots in chunk_segments(candidates, offsets):
        rescore_kernels.score_bit_slots(
            queries, totals, bit_chunks[c], rows, slots, candidates.shape[1], scores.reshape(-1)
        )
    return top_by_score(scores, candidates, min(k, candidates.shape[1]))


def exact_int8_chunks(
    queries: np.ndarray,
    code_chunks: Sequence[MappedRows],
    offsets: np.ndarray,
    calibration: Calibration,
    k: int,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive top ``min(k, n)`` by dequantized int8 dot product over every chunk."""
    keys, ids = [], []
    for chunk, offset in zip(code_chunks, offsets):
        scores, local = int8_topk(queries, chunk.array, calibration, k, threads=threads)
        keys.append(-scores)
        ids.append(local + offset)
    neg_scores, merged_ids = merge_sorted(keys, ids, min(k, int(offsets[-1])), np.float32(np.inf))
    return -neg_scores, merged_ids
