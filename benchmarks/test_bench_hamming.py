"""Hamming top-k: numba vs faiss vs usearch vs numpy on one machine, in one run.

``faiss`` is the faiss backend (``knn_hamming`` on the raw arrays), ``faiss-index`` is
``IndexBinaryFlat.search``. Shapes: ``corpus_rows`` x {384, 1024} bits, batches {1, 16, 256}, k {10, 100}, threads {1, 2},
plus the memory read bandwidth of the same corpus as the physical limit for batch 1.
Run: ``pytest benchmarks/test_bench_hamming.py --benchmark-json=benchmarks/results/hamming.json``;
summarise with ``python benchmarks/summarize.py benchmarks/results/hamming.json``.
"""

from __future__ import annotations

import numba
import pytest

from bandwidth import read_all
from fastquant import hamming_topk
from fastquant.backends import available_backends

BITS = [384, 1024]
BATCHES = [1, 16, 256]
KS = [10, 100]
THREADS = [1, 2]
#: Backends that materialise every distance are ~50x slower: fewer rounds, no batch of 256 for NumPy.
SLOW = {"numpy", "usearch"}


def _rounds(backend: str, batch: int) -> int:
    if backend in SLOW:
        return 2 if batch == 1 else 1
    return {1: 20, 16: 6, 256: 2}[batch]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("nbits", BITS)
def test_memory_bandwidth(benchmark, random_bits, corpus_rows, nbits, threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("fewer cores than threads")
    corpus = random_bits(corpus_rows, nbits // 8)
    benchmark.extra_info.update(
        kind="bandwidth", nbits=nbits, threads=threads, rows=corpus_rows, bytes=corpus.nbytes
    )
    read_all(corpus, threads)
    benchmark.pedantic(read_all, args=(corpus, threads), rounds=20, warmup_rounds=1)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("nbits", BITS)
@pytest.mark.parametrize("backend", ["numba", "faiss", "usearch", "numpy"])
def test_hamming_topk(benchmark, random_bits, corpus_rows, backend, nbits, batch, k, threads):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    if backend == "numpy" and batch == 256:
        pytest.skip("NumPy needs ~20 s per round at batch 256; batches 1 and 16 show its rate")
    corpus = random_bits(corpus_rows, nbits // 8)
    queries = random_bits(batch + 7, nbits // 8)[7:]
    benchmark.extra_info.update(
        kind="hamming",
        backend=backend,
        nbits=nbits,
        batch=batch,
        k=k,
        threads=threads,
        rows=corpus_rows,
        bytes=corpus.nbytes,
    )
    benchmark.pedantic(
        hamming_topk,
        args=(corpus, queries, k),
        kwargs={"backend": backend, "threads": threads},
        rounds=_rounds(backend, batch),
        warmup_rounds=1,
    )


_FAISS_INDEXES: dict[tuple[int, int], object] = {}


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("nbits", BITS)
def test_faiss_index_binary_flat(benchmark, random_bits, corpus_rows, nbits, batch, k, threads):
    """faiss ``IndexBinaryFlat.search`` as users call it (corpus copied into the index beforehand)."""
    faiss = pytest.importorskip("faiss")
    corpus = random_bits(corpus_rows, nbits // 8)
    queries = random_bits(batch + 7, nbits // 8)[7:]
    key = (corpus_rows, nbits)
    if key not in _FAISS_INDEXES:
        index = faiss.IndexBinaryFlat(nbits)
        index.add(corpus)
        _FAISS_INDEXES[key] = index
    index = _FAISS_INDEXES[key]
    benchmark.extra_info.update(
        kind="hamming",
        backend="faiss-index",
        nbits=nbits,
        batch=batch,
        k=k,
        threads=threads,
        rows=corpus_rows,
        bytes=corpus.nbytes,
    )
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        benchmark.pedantic(
            index.search, args=(queries, k), rounds=_rounds("faiss", batch), warmup_rounds=1
        )
    finally:
        faiss.omp_set_num_threads(previous)
