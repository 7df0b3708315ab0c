"""Hamming top-k head to head: every engine timed in alternating rounds on the same data.

This machine's memory speed drifts by tens of percent over minutes, so ratios between
separately timed benchmarks are unreliable. Here each round runs every engine once, in turn,
and the ratios compare medians over rounds. For batch 1 the round also reads the whole corpus
with the bandwidth probe, the physical limit of a single-query scan.
Engines: ``numba`` (fastquant), ``faiss-index`` (``IndexBinaryFlat.search``), ``faiss``
(fastquant's faiss backend: ``knn_hamming`` plus exact tie order), ``usearch``, ``numpy``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bandwidth import read_all
from fastquant import hamming_topk
from fastquant.backends import available_backends
from rounds import alternate

BITS = [384, 1024]
BATCHES = [1, 16, 256]
KS = [10, 100]
THREADS = [1, 2]
ROUNDS = {1: 15, 16: 5, 256: 3}


def _faiss_index_search(corpus: np.ndarray, threads: int):
    faiss = pytest.importorskip("faiss")
    index = faiss.IndexBinaryFlat(corpus.shape[1] * 8)
    index.add(corpus)

    def search(queries: np.ndarray, k: int):
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)
        try:
            return index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(previous)

    return search


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("nbits", BITS)
def test_head_to_head(benchmark, random_bits, corpus_rows, nbits, batch, k, threads):
    corpus = random_bits(corpus_rows, nbits // 8)
    queries = random_bits(batch + 7, nbits // 8)[7:]
    engines = {
        name: (lambda name=name: hamming_topk(corpus, queries, k, backend=name, threads=threads))
        for name in available_backends()
        if not (name == "numpy" and batch == 256)
    }
    faiss_index = _faiss_index_search(corpus, threads)
    engines["faiss-index"] = lambda: faiss_index(queries, k)
    if batch == 1:
        engines["read"] = lambda: read_all(corpus, threads)
    medians = alternate(engines, ROUNDS[batch], shuffle=False)
    benchmark.extra_info.update(
        kind="head-to-head",
        nbits=nbits,
        batch=batch,
        k=k,
        threads=threads,
        rows=corpus_rows,
        bytes=corpus.nbytes,
        rounds=ROUNDS[batch],
        median_seconds=medians,
    )
    benchmark.pedantic(engines["numba"], rounds=3, warmup_rounds=0)
