"""NumPy backend: a plain reference engine with bounded memory, no compiled code of its own."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Most corpus rows compared with the queries per step.
CHUNK_ROWS = 65536

#: Rough bound on the bytes of one block's temporaries: ``(queries, rows, nbytes) uint8``
#: XOR bits and ``(queries, rows) int64`` keys.
BLOCK_BYTES = 1 << 24


def _distances(chunk_bits: np.ndarray, query_bits: np.ndarray) -> np.ndarray:
    """Hamming distances ``(q, rows) int32`` of ``query_bits (q, nbytes)`` to ``chunk_bits``."""
    diff = np.bitwise_xor(query_bits[:, None, :], chunk_bits[None, :, :])
    np.bitwise_count(diff, out=diff)
    return diff.sum(axis=-1, dtype=np.int32)


def _topk(corpus_bits: np.ndarray, query_bits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``query_bits (q, nbytes)``, the corpus read once in chunks of rows.

    Each candidate is the single key ``distance * n + id``: keys are distinct and ascending keys
    mean ascending distance, ties by ascending id, so ``np.partition`` keeps exactly the right set.
    Temporaries stay near ``BLOCK_BYTES`` by taking the queries a few at a time per chunk.
    """
    n, nbytes = corpus_bits.shape
    q = query_bits.shape[0]
    rows = min(n, CHUNK_ROWS, max(1, BLOCK_BYTES // nbytes))
    step = max(1, BLOCK_BYTES // (rows * max(nbytes, 8)))
    best = np.empty((q, 0), dtype=np.int64)
    for lo in range(0, n, rows):
        chunk_bits = corpus_bits[lo : lo + rows]
        ids = np.arange(lo, lo + chunk_bits.shape[0], dtype=np.int64)
        merged = []
        for q_lo in range(0, q, step):
            keys = _distances(chunk_bits, query_bits[q_lo : q_lo + step]).astype(np.int64) * n
            keys = np.concatenate([best[q_lo : q_lo + step], keys + ids], axis=1)
            if keys.shape[1] > k:
                keys = np.partition(keys, k - 1, axis=1)[:, :k]
            merged.append(keys)
        best = np.concatenate(merged)
    best.sort(axis=1)
    return (best // n).astype(np.int32), best % n


class NumpyBackend:
    """Exact top-k in NumPy: ``bitwise_xor`` + ``bitwise_count``, ties by ascending id."""

    name = "numpy"

    def topk(
        self, corpus_bits: np.ndarray, query_bits: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(n, nbytes) uint8`` corpus, ``(q, nbytes) uint8`` queries -> ``(q, k)`` int32, int64.

        With ``threads > 1`` the queries are split into up to ``threads`` contiguous batches run
        on a thread pool (NumPy releases the GIL in its loops).
        """
        q = query_bits.shape[0]
        parts = min(threads, q)
        if parts == 1:
            return _topk(corpus_bits, query_bits, k)
        batches = [query_bits[q * t // parts : q * (t + 1) // parts] for t in range(parts)]
        with ThreadPoolExecutor(max_workers=parts) as pool:
            results = list(pool.map(lambda batch: _topk(corpus_bits, batch, k), batches))
        distances, ids = zip(*results)
        return np.concatenate(distances), np.concatenate(ids)
