"""Exact search against the float32 baseline: every engine timed in alternating rounds, one run.

Usage::

    python benchmarks/float_baseline.py           # 1M rows x {384, 1024} dims (~8 minutes)
    python benchmarks/float_baseline.py --quick   # 5,000 rows: a smoke test

Corpus: ``--rows`` normalized gaussian rows per dimension (``lib/synthetic.py``); queries are noisy
copies of stored rows. int8 ranges come from the first 100k rows (or all with ``--quick``), like
a store's first append. k = 10. Engines (see ``ENGINES``) run on ``threads`` threads each: faiss
through ``omp_set_num_threads``, usearch and fastquant through their ``threads`` arguments; the
NumPy rescoring step is single-threaded. Per (dimension, threads, batch), every engine runs once
per round, in a shuffled order, and the figures to quote are ratios of medians over rounds
(``speedup_over_float32``). Batch 1 is ``BATCH_1_CALLS`` single-query calls in a row; batch 256
skips the warm-up pass (the engines are warmed up once per corpus on small batches).

faiss ``IndexFlatIP`` answered one query 2.2-2.5x slower on two OpenMP threads than on one here, so
two-thread batch-1 cases also time it on one thread (``float32 1-thread``), and
``speedup_over_best_float32`` divides by the faster of the two. One thread at batch 256 is
skipped unless ``--all-cases`` (it would add ~4 minutes; two threads show batch 256).

Memory: the corpus is generated block by block straight into the indexes, so 1M x 1024 needs
about 6.3 GB (float32 index 4.1 GB, faiss SQ8 1 GB, int8 codes 1 GB, bits twice 128 MB); each
dimension's data is freed before the next.

Check: every engine's best row is the row its query was made from for at least 90% of the
queries (the queries are close copies of stored rows).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # faiss beside Numba: see lib/record.py

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fastquant import Calibration, hamming_topk, int8_topk, quantize_embeddings, rescore_int8
from lib import record
from lib.rounds import alternate, faiss_threads
from lib.synthetic import batches, noisy_queries

SEED = 20261121
K, MULTIPLIER = 10, 4
CALIBRATION_ROWS = 100_000
BUILD_BATCH_ROWS = 100_000
BATCH_1_CALLS = 8
ROUNDS = {1: 7, 16: 5, 256: 3}
#: (threads, batch) cases left out unless ``--all-cases``.
SKIPPED_CASES = {(1, 256)}

#: What each engine does, stored with the results.
ENGINES = {
    "float32": "faiss IndexFlatIP over float32 rows (the baseline)",
    "float32 1-thread": "the same on one OpenMP thread (two-thread batch-1 cases only)",
    "faiss-sq8": "faiss IndexScalarQuantizer QT_8bit, inner product (faiss decodes to float)",
    "usearch-i8": "usearch.index.search(exact=True) over int8 codes, inner product of int8 "
    "codes (queries quantized with the same ranges), no index built",
    "int8": "fastquant.int8_topk: exact, dequantized int8 dot products",
    "binary": "fastquant.hamming_topk: Hamming top 10, no rescoring",
    "binary+int8 x4": "fastquant.hamming_topk(40) then rescore_int8 to 10",
    "faiss-binary+numpy x4": "faiss IndexBinaryFlat top 40, then NumPy rescoring of their "
    "int8 codes, dequantized (the HF blog demo's pipeline scores the raw codes)",
}


@dataclass
class Corpus:
    """One synthetic corpus in every engine's format, and its queries ``(q, dim) float32``."""

    dim: int
    rows: int
    flat: object
    sq8: object
    binary_index: object
    codes: np.ndarray
    bits: np.ndarray
    calibration: Calibration
    queries: np.ndarray
    sources: np.ndarray
    build_seconds: float


def build_corpus(rows: int, dim: int, query_count: int) -> Corpus:
    """Generate ``rows x dim`` rows in blocks straight into every engine's storage."""
    import faiss

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    sq8 = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    binary_index = faiss.IndexBinaryFlat(dim)
    codes = np.empty((rows, dim), dtype=np.int8)
    bits = np.empty((rows, dim // 8), dtype=np.uint8)
    calibration = None
    lo = 0
    for block in batches(SEED, rows, dim, min(BUILD_BATCH_ROWS, rows)):
        if calibration is None:
            calibration = Calibration.from_embeddings(block[:CALIBRATION_ROWS])
            sq8.train(block[:CALIBRATION_ROWS])
        hi = lo + block.shape[0]
        codes[lo:hi] = calibration.quantize(block)
        bits[lo:hi] = quantize_embeddings(block, "ubinary")
        flat.add(block)
        sq8.add(block)
        lo = hi
    binary_index.add(bits)
    queries, sources = noisy_queries(SEED, rows, dim, query_count)
    return Corpus(
        dim, rows, flat, sq8, binary_index, codes, bits, calibration, queries, sources,
        time.perf_counter() - start,
    )  # fmt: skip


def engines(corpus: Corpus, threads: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """``{name: search(queries (q, dim) float32) -> ids (q, K) int64}`` on ``threads`` threads."""
    from usearch import index as usearch_index

    c = corpus

    def usearch_i8(queries: np.ndarray) -> np.ndarray:
        matches = usearch_index.search(
            c.codes, c.calibration.quantize(queries), K, usearch_index.MetricKind.IP,
            exact=True, threads=threads, dtype=usearch_index.ScalarKind.I8,
        )  # fmt: skip
        return matches.keys.reshape(len(queries), K).astype(np.int64)

    def binary(queries: np.ndarray, k: int = K) -> np.ndarray:
        query_bits = quantize_embeddings(queries, "ubinary")
        return hamming_topk(c.bits, query_bits, k, threads=threads)[1]

    def binary_int8(queries: np.ndarray) -> np.ndarray:
        return rescore_int8(
            c.codes, queries, binary(queries, K * MULTIPLIER), K, calibration=c.calibration
        )[1]

    def faiss_binary_numpy(queries: np.ndarray) -> np.ndarray:
        _, ids = c.binary_index.search(quantize_embeddings(queries, "ubinary"), K * MULTIPLIER)
        rows = c.codes[ids].astype(np.float32) + np.float32(128)
        rows = rows * c.calibration.steps + c.calibration.starts
        scores = np.einsum("qd,qcd->qc", queries, rows)
        return np.take_along_axis(ids, np.argsort(-scores, axis=1)[:, :K], axis=1)

    return {
        "float32": lambda q: c.flat.search(q, K)[1],
        "faiss-sq8": lambda q: c.sq8.search(q, K)[1],
        "usearch-i8": usearch_i8,
        "int8": lambda q: int8_topk(c.codes, q, K, calibration=c.calibration, threads=threads)[1],
        "binary": binary,
        "binary+int8 x4": binary_int8,
        "faiss-binary+numpy x4": faiss_binary_numpy,
    }


def top1_is_source(corpus: Corpus) -> dict[str, float]:
    """Per engine, the fraction of queries whose best row is the row the query was made from."""
    top1 = {
        name: float(np.mean(search(corpus.queries)[:, 0] == corpus.sources))
        for name, search in engines(corpus, threads=2).items()
    }
    if min(top1.values()) < 0.9:
        raise AssertionError(f"an engine misses the queries' source rows: {top1}")
    return top1


def float32_one_thread(corpus: Corpus, queries: np.ndarray) -> np.ndarray:
    """The float32 baseline's ids ``(q, K)`` with faiss on one OpenMP thread."""
    with faiss_threads(1):
        return corpus.flat.search(queries, K)[1]


def time_case(corpus: Corpus, threads: int, batch: int, rounds: int) -> dict:
    """Median seconds per engine of one call (``BATCH_1_CALLS`` queries at batch 1)."""
    searches = engines(corpus, threads)
    if threads > 1 and batch == 1:
        searches["float32 1-thread"] = lambda q: float32_one_thread(corpus, q)
    if batch == 1:
        queries = corpus.queries[:BATCH_1_CALLS, None, :]
    else:
        queries = corpus.queries[None, :batch]
    calls = {
        name: (lambda search=search: [search(q) for q in queries])
        for name, search in searches.items()
    }
    with faiss_threads(threads):
        medians = alternate(calls, rounds, warmup=batch < 256)
    query_count = queries.shape[0] * queries.shape[1]
    best_float32 = min(medians["float32"], medians.get("float32 1-thread", np.inf))
    return {
        "dim": corpus.dim,
        "rows": corpus.rows,
        "threads": threads,
        "batch": batch,
        "queries_per_call": query_count,
        "rounds": rounds,
        "median_seconds": medians,
        "queries_per_second": {name: query_count / s for name, s in medians.items()},
        "speedup_over_float32": {name: medians["float32"] / s for name, s in medians.items()},
        "speedup_over_best_float32": {name: best_float32 / s for name, s in medians.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--rows", type=int, help="rows per corpus (1,000,000; 5,000 with --quick)")
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 1024])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--rounds", type=int, help="rounds per case (default by batch: 7, 5, 3)")
    parser.add_argument(
        "--all-cases", action="store_true", help="also one thread at batch 256 (~4 more minutes)"
    )
    args = parser.parse_args(argv)
    if any(dim % 8 for dim in args.dims):
        parser.error("--dims must be multiples of 8")
    record.require("faiss", "usearch")
    run = record.Run("float_baseline", args, argv)
    rows = args.rows or (5_000 if args.quick else 1_000_000)
    skipped = set() if args.all_cases else SKIPPED_CASES
    cases, top1, build = [], {}, {}
    for dim in args.dims:
        print(f"building {rows:,} x {dim} ...", flush=True)
        corpus = build_corpus(rows, dim, max(max(args.batches), BATCH_1_CALLS))
        build[str(dim)] = corpus.build_seconds
        top1[str(dim)] = top1_is_source(corpus)
        for threads in args.threads:
            for batch in args.batches:
                if (threads, batch) in skipped:
                    continue
                rounds = args.rounds or (1 if args.quick else ROUNDS.get(batch, 3))
                case = time_case(corpus, threads, batch, rounds)
                print(
                    f"dim {dim} threads {threads} batch {batch}: float32 "
                    f"{case['queries_per_second']['float32']:,.1f} q/s; speed-ups "
                    + ", ".join(f"{n} {v:.1f}x" for n, v in case["speedup_over_float32"].items()),
                    flush=True,
                )
                cases.append(case)
        del corpus
        gc.collect()
    run.save(
        threads=args.threads,
        shapes={
            "rows": rows,
            "dims": args.dims,
            "batches": args.batches,
            "one-query calls at batch 1": BATCH_1_CALLS,
            "k": K,
            "rescore multiplier": MULTIPLIER,
            "calibration rows": min(rows, CALIBRATION_ROWS),
        },
        skipped_cases=sorted(skipped),
        engines=ENGINES,
        build_seconds=build,
        top1_is_source=top1,
        cases=cases,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
