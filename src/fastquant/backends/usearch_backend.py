"""usearch backend: ``usearch.index.search`` in exact mode over 1-bit scalars, no index built."""

from __future__ import annotations

import numpy as np

from .base import exact_ties, import_library


class UsearchBackend:
    """Exact top-k with usearch's brute-force Hamming search, ties put in ascending id order."""

    name = "usearch"

    def __init__(self) -> None:
        self._index = import_library("usearch.index", "usearch", "usearch")

    def topk(
        self, corpus_bits: np.ndarray, query_bits: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(n, nbytes) uint8`` corpus, ``(q, nbytes) uint8`` queries -> ``(q, k)`` int32, int64.

        usearch sizes its own pool to ``threads``; distances come back as float32 and keys as
        uint64, and a single query yields 1-D arrays, hence the reshaping.
        """
        index = self._index

        def search(rows: np.ndarray, k_request: int) -> tuple[np.ndarray, np.ndarray]:
            matches = index.search(
                corpus_bits,
                query_bits[rows],
                k_request,
                index.MetricKind.Hamming,
                exact=True,
                threads=threads,
                dtype=index.ScalarKind.B1,
            )
            distances = matches.distances.reshape(rows.size, k_request)
            keys = matches.keys.reshape(rows.size, k_request)
            return distances.astype(np.int32), keys.astype(np.int64)

        return exact_ties(search, query_bits.shape[0], corpus_bits.shape[0], k)
