"""The machine's memory read bandwidth, measured with the same thread pool as the kernels.

A Hamming scan of one query reads every corpus byte once, so ``corpus bytes / read time`` is the
physical limit for batch 1; the suite measures it in the same run as the kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, nogil=True, cache=True, fastmath=True)
def _sum_words(words, chunks):
    partial = np.zeros(chunks, dtype=np.uint64)
    per_chunk = (words.shape[0] + chunks - 1) // chunks
    for c in prange(chunks):
        lo = c * per_chunk
        hi = min(words.shape[0], lo + per_chunk)
        acc = np.uint64(0)
        for w in words[lo:hi]:
            acc += w
        partial[c] = acc
    return partial.sum()


def read_all(buffer: np.ndarray, threads: int) -> int:
    """Read every byte of ``buffer`` (C-contiguous, size a multiple of 8) on ``threads`` threads."""
    return int(_sum_words(buffer.reshape(-1).view(np.uint64), threads))
