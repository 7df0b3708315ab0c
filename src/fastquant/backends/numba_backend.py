"""Numba backend: fastquant's own jitted Hamming scan, serial or on a bounded thread pool."""

from __future__ import annotations

import numpy as np

from .._kernels import config
from .._kernels.hamming import hamming_topk_parallel, hamming_topk_serial


class NumbaBackend:
    """Exact top-k with ``fastquant._kernels.hamming``; ties come out by ascending id."""

    name = "numba"

    def topk(
        self, corpus_bits: np.ndarray, query_bits: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(n, nbytes) uint8`` corpus, ``(q, nbytes) uint8`` queries -> ``(q, k)`` int32, int64.

        Small jobs (``n * nbytes * q < PARALLEL_MIN_WORK_BYTES``) run on the calling thread;
        larger ones on ``min(threads, NUMBA_NUM_THREADS)`` Numba threads, the corpus split into
        one range per thread. Numba's thread count is restored afterwards.
        """
        n, nbytes = corpus_bits.shape
        q = query_bits.shape[0]
        out_dist = np.empty((q, k), dtype=np.int32)
        out_ids = np.empty((q, k), dtype=np.int64)
        # np.asarray drops ndarray subclasses such as np.memmap without copying.
        corpus_flat = np.asarray(corpus_bits).reshape(-1)
        queries_flat = np.asarray(query_bits).reshape(-1)
        if threads == 1 or n * nbytes * q < config.PARALLEL_MIN_WORK_BYTES:
            hamming_topk_serial(corpus_flat, queries_flat, nbytes, n, k, config.PREFETCH_BYTES, out_dist, out_ids)
            return out_dist, out_ids
        with config.numba_threads(threads) as used:
            hamming_topk_parallel(corpus_flat, queries_flat, nbytes, n, k, used, config.PREFETCH_BYTES, out_dist, out_ids)
        return out_dist, out_ids
