"""faiss backend: ``faiss.knn_hamming`` on the raw arrays, no index object, no corpus copy."""

from __future__ import annotations

import numpy as np

from .base import exact_ties, import_library


class FaissBackend:
    """Exact top-k with faiss's heap scan (``variant="hc"``), ties put in ascending id order."""

    name = "faiss"

    def __init__(self) -> None:
        self._faiss = import_library("faiss", "faiss", "faiss-cpu")

    def topk(
        self, corpus_bits: np.ndarray, query_bits: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(n, nbytes) uint8`` corpus, ``(q, nbytes) uint8`` queries -> ``(q, k)`` int32, int64.

        Runs with ``threads`` OpenMP threads, then restores faiss's previous thread count.
        """
        faiss = self._faiss

        def search(rows: np.ndarray, k_request: int) -> tuple[np.ndarray, np.ndarray]:
            return faiss.knn_hamming(query_bits[rows], corpus_bits, k_request, variant="hc")

        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)
        try:
            return exact_ties(search, query_bits.shape[0], corpus_bits.shape[0], k)
        finally:
            faiss.omp_set_num_threads(previous)
