"""Hamming top-k head to head: every engine timed in alternating rounds on the same random bits.

Usage::

    python benchmarks/hamming.py           # 1M rows x {384, 1024} bits, k {10, 100}, 1-2 threads
    python benchmarks/hamming.py --quick   # 20k rows, k 10, one round

This machine's memory speed drifts by tens of percent over minutes, so ratios between
separately timed runs are unreliable: each round runs every engine once, in turn, and the
figures are medians over rounds. At batch 1 the round also reads the whole corpus with the
bandwidth probe (``lib/bandwidth.py``), the physical limit of a one-query scan. NumPy is left
out at batch 256 (~20 s per round; batches 1 and 16 show its rate). Before timing, every
fastquant backend must return the numba backend's answer.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # faiss beside Numba: see lib/record.py

import sys

import numpy as np

from fastquant import hamming_topk
from fastquant.backends import available_backends
from lib import record
from lib.bandwidth import read_all
from lib.rounds import alternate, faiss_threads

SEED = 20261121
ROUNDS = {1: 15, 16: 5, 256: 3}
ENGINES = {
    "numba": "fastquant.hamming_topk, numba backend (fastquant's own kernel)",
    "faiss-index": "faiss IndexBinaryFlat.search, as users call it (corpus added beforehand)",
    "faiss": "fastquant's faiss backend: faiss knn_hamming on the raw arrays, plus exact tie order",
    "usearch": "fastquant's usearch backend: usearch.index.search(exact=True) over 1-bit scalars",
    "numpy": "fastquant's numpy backend: XOR and np.bitwise_count, a plain reference",
    "read": "the bandwidth probe reading the whole corpus once (batch 1 only)",
}


def faiss_index_search(corpus_bits: np.ndarray, threads: int):
    """``search(query_bits, k)`` of a faiss ``IndexBinaryFlat`` holding ``corpus_bits``, on ``threads``."""
    import faiss

    index = faiss.IndexBinaryFlat(corpus_bits.shape[1] * 8)
    index.add(corpus_bits)

    def search(query_bits: np.ndarray, k: int):
        with faiss_threads(threads):
            return index.search(query_bits, k)

    return search


def measure(corpus_bits: np.ndarray, query_bits: np.ndarray, k: int, threads: int, rounds: int):
    """Median seconds per engine of one call on ``query_bits`` ``(batch, nbytes)``."""
    batch = query_bits.shape[0]
    engines = {
        name: (
            lambda name=name: hamming_topk(
                corpus_bits, query_bits, k, backend=name, threads=threads
            )
        )
        for name in available_backends()
        if not (name == "numpy" and batch == 256)
    }
    expected = engines["numba"]()
    for name, search in engines.items():
        if not all(np.array_equal(a, b) for a, b in zip(search(), expected)):
            raise AssertionError(f"the {name} backend differs from numba (k {k}, batch {batch})")
    faiss_index = faiss_index_search(corpus_bits, threads)
    engines["faiss-index"] = lambda: faiss_index(query_bits, k)
    if batch == 1:
        engines["read"] = lambda: read_all(corpus_bits, threads)
    return alternate(engines, rounds, shuffle=False)


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--rows", type=int, help="corpus rows (1,000,000; 20,000 with --quick)")
    args = parser.parse_args(argv)
    record.require("faiss")
    run = record.Run("hamming", args, argv)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    bits, batches, threads = [384, 1024], [1, 16, 256], [1, 2]
    ks = [10] if args.quick else [10, 100]
    rng = np.random.default_rng(SEED)
    cases = []
    for nbits in bits:
        corpus_bits = rng.integers(0, 256, size=(rows, nbits // 8), dtype=np.uint8)
        for batch in batches:
            query_bits = rng.integers(0, 256, size=(batch, nbits // 8), dtype=np.uint8)
            for k in ks:
                for t in threads:
                    rounds = 1 if args.quick else ROUNDS[batch]
                    medians = measure(corpus_bits, query_bits, k, t, rounds)
                    cases.append(
                        {"bits": nbits, "batch": batch, "k": k, "threads": t,
                         "bytes": corpus_bits.nbytes, "rounds": rounds, "median_seconds": medians}
                    )  # fmt: skip
                    print(f"{nbits} bits, batch {batch}, k {k}, {t} thread(s): {medians}")
    run.save(
        threads=threads,
        shapes={"rows": rows, "bits": bits, "batches": batches, "k": ks},
        engines={name: ENGINES[name] for name in cases[0]["median_seconds"]},
        cases=cases,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
