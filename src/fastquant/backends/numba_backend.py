"""Numba backend: fastquant's own jitted Hamming scan, serial or on a bounded thread pool."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._kernels import config
from .._kernels.hamming import addresses_of, hamming_topk_parallel, hamming_topk_serial


class NumbaBackend:
    """Exact top-k with ``fastquant._kernels.hamming``; ties come out by ascending id."""

    name = "numba"

    def topk(
        self, corpus_bits: np.ndarray, query_bits: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(n, nbytes) uint8`` corpus, ``(q, nbytes) uint8`` queries -> ``(q, k)`` int32, int64."""
        return self.topk_chunks([corpus_bits], query_bits, k, threads)

    def topk_chunks(
        self,
        chunks: Sequence[np.ndarray],
        query_bits: np.ndarray,
        k: int,
        threads: int,
        allowed: Sequence[np.ndarray | None] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over the rows of several ``(n_c, nbytes) uint8`` C-contiguous arrays, ids global.

        ``allowed[c]``, if given and not None, is a bitmap ``(ceil(n_c / 8),) uint8`` (bit ``r &
        7`` of byte ``r >> 3``) of the rows of chunk ``c`` that may be returned; ``k`` must not
        exceed their number.

        One scan covers every chunk, so a chunked corpus costs what one array of its rows would.
        Small jobs (rows x ``nbytes`` x queries < ``PARALLEL_MIN_WORK_BYTES``) run on the calling
        thread; larger ones on ``min(threads, NUMBA_NUM_THREADS)`` Numba threads, each chunk split
        into one range per thread. Numba's thread count is restored afterwards.
        """
        nbytes = query_bits.shape[1]
        q = query_bits.shape[0]
        # The kernel reads rows ``nbytes`` apart through the chunks' addresses: make them
        # C-contiguous and keep this list, and so every chunk, alive until it returns.
        chunks = [np.ascontiguousarray(chunk).view(np.uint8) for chunk in chunks]
        for chunk in chunks:
            if chunk.ndim != 2 or chunk.shape[1] != nbytes:
                raise ValueError(
                    f"chunk of shape {chunk.shape} does not hold rows of {nbytes} bytes"
                )
        addresses = addresses_of(chunks)
        rows = np.array([chunk.shape[0] for chunk in chunks], dtype=np.int64)
        bitmaps = [None if bitmap is None else np.ascontiguousarray(bitmap) for bitmap in allowed]
        allow_addresses = addresses_of(bitmaps or [None] * len(chunks))
        out_dist = np.empty((q, k), dtype=np.int32)
        out_ids = np.empty((q, k), dtype=np.int64)
        queries_flat = np.ascontiguousarray(query_bits).reshape(-1)
        if threads == 1 or int(rows.sum()) * nbytes * q < config.PARALLEL_MIN_WORK_BYTES:
            hamming_topk_serial(
                addresses, rows, allow_addresses, queries_flat, nbytes, k,
                config.PREFETCH_BYTES, out_dist, out_ids,
            )  # fmt: skip
            return out_dist, out_ids
        with config.numba_threads(threads) as used:
            hamming_topk_parallel(
                addresses,
                rows,
                allow_addresses,
                queries_flat,
                nbytes,
                k,
                used,
                config.PREFETCH_BYTES,
                out_dist,
                out_ids,
            )
        return out_dist, out_ids
