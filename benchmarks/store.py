"""CorpusStore: warm int8 rescoring, search against the bare Hamming scan, and the append rate.

Usage::

    python benchmarks/store.py           # a 1M x 1024-d store; appends of 1M x 384-d
    python benchmarks/store.py --quick   # 20k rows, one round

The store holds normalized gaussian rows (``lib/synthetic.py``), built once in a temporary
folder; queries are noisy copies of stored rows; k = 10, rescore multiplier 4 (40 candidates),
2 threads for searches. The engines compared in each part run in alternating rounds, in a
shuffled order per round (``lib/rounds.py``); the figures are medians and their ratios.

1. Warm rescoring: per query, the 40 Hamming candidates of a 1024-d query rescored from warm
   int8 codes, 1,000 queries (40 MB of candidate rows, more than the 32 MiB L3) one at a time:
   ``public-in-ram`` is ``fastquant.rescore_int8`` on the codes copied into one array;
   ``store`` and ``store-no-prefetch`` rescore from the store's memory-mapped chunks, with and
   without the ``madvise(WILLNEED)`` of the candidate rows.
2. Search against the scan, batches 1 and 16, on a store of sign bits searched with
   ``scan="hamming"``: ``kernel`` (``hamming_topk`` of the bits in memory for the top 40),
   ``search`` (int8 rescoring), ``search-none`` (Hamming order),
   ``search-bits`` (bit rescoring), ``search-bits-in-memory`` (int8, the store opened with
   ``bits_in_memory=True``).
3. Appends: ``append`` is the whole job for 1M x 384-d rows in batches of 100k into a store of
   centred bits, the default (checks, calibration and centre from the first batch, centred bits
   and their factors, int8 codes, CRC-32, ``pwrite``, ``fsync``, commits), each round into a
   fresh store; ``quantize`` repeats only its checks and
   quantization in memory, ``crc`` its checksums; the rest of ``append`` is file I/O and commits.

Checks: both store rescorings return exactly ``rescore_int8``'s answer, whose scores match
float64 dot products with the dequantized rows; ``search`` equals ``rescore_int8`` of the
kernel's candidates; ``rescore="none"`` returns the kernel's order and ``dim - 2 * distance``;
an appended store holds exactly the quantized rows and verifies.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

from fastquant import Calibration, CorpusStore, hamming_topk, quantize_embeddings, rescore_int8
from fastquant._engine import score_int8, top_by_score
from fastquant.quantize import centre_of, centred_checked, quantize_checked
from fastquant.store.corpus import APPEND_SLICE_ROWS
from fastquant.validation import as_embeddings
from lib import record
from lib.rounds import alternate, alternate_calls
from lib.synthetic import batches, build_store, noisy_queries

DIM, APPEND_DIM, SEED = 1024, 384, 20261121
K, MULTIPLIER, THREADS = 10, 4, 2
APPEND_BATCH_ROWS = 100_000


def public_rescore(
    query_f32: np.ndarray, codes_i8: np.ndarray, candidates: np.ndarray, calibration
):
    """``fastquant.rescore_int8`` of ``candidates`` to the top ``K``: what the store must match."""
    return rescore_int8(codes_i8, query_f32, candidates, K, calibration=calibration, threads=1)


def same(got: tuple, expected: tuple, what: str) -> None:
    """Raise unless ``got`` and ``expected`` (scores, ids) are equal."""
    if not all(np.array_equal(a, b) for a, b in zip(got, expected)):
        raise AssertionError(f"{what} differs from rescore_int8 of the same candidates")


def warm_rescoring(store: CorpusStore, bits: np.ndarray, codes: np.ndarray, quick: bool) -> dict:
    """Part 1: microseconds per query of each rescoring engine."""
    snapshot, calibration = store.snapshot, store.calibration
    n_queries = 16 if quick else 1000
    queries, _ = noisy_queries(SEED, len(store), DIM, n_queries)
    _, candidates = hamming_topk(bits, quantize_embeddings(queries, "ubinary"), K * MULTIPLIER)

    def public(i: int):
        return public_rescore(queries[i], codes, candidates[i], calibration)

    def chunks(i: int, prefetch: bool = True):
        scores = score_int8(
            snapshot.corpus, queries[i : i + 1], candidates[i : i + 1], prefetch=prefetch
        )
        return top_by_score(scores, candidates[i : i + 1], K)

    for i in range(n_queries):
        same(chunks(i), public(i), "rescoring from the store's chunks")
        same(chunks(i, prefetch=False), public(i), "rescoring without prefetch")
    rows = calibration.dequantize(codes[candidates].reshape(-1, DIM)).astype(np.float64)
    reference = np.einsum(
        "qcd,qd->qc", rows.reshape(n_queries, -1, DIM), queries.astype(np.float64)
    )
    scores = np.concatenate([public(i)[0] for i in range(n_queries)])
    if not np.allclose(scores, -np.sort(-reference, axis=1)[:, :K], rtol=1e-4, atol=1e-4):
        raise AssertionError("rescore_int8's scores differ from the dequantized dot products")
    engines = {
        "public-in-ram": public,
        "store": chunks,
        "store-no-prefetch": lambda i: chunks(i, prefetch=False),
    }
    seconds = alternate_calls(engines, n_queries, rounds=1 if quick else 9)
    return {
        "queries": n_queries,
        "candidates": K * MULTIPLIER,
        "median_us_per_query": {n: 1e6 * float(np.median(s)) for n, s in seconds.items()},
        "mean_us_per_query": {n: 1e6 * float(np.mean(s)) for n, s in seconds.items()},
        "p90_us_per_query": {n: 1e6 * float(np.percentile(s, 90)) for n, s in seconds.items()},
    }


def search_vs_kernel(
    store: CorpusStore, bits: np.ndarray, codes: np.ndarray, batch: int, quick: bool
) -> dict:
    """Part 2 at one batch size: median seconds per engine over the same query batches."""
    memory_store = CorpusStore.open(store.path, bits_in_memory=True)
    calls = {1: 8, 16: 2}[batch]
    queries, _ = noisy_queries(SEED, len(store), DIM, calls * batch, query_seed=batch)
    queries = queries.reshape(calls, batch, DIM)
    query_bits = quantize_embeddings(queries.reshape(-1, DIM), "ubinary").reshape(calls, batch, -1)

    def kernel(qb: np.ndarray):
        return hamming_topk(bits, qb, K * MULTIPLIER, threads=THREADS)

    def search(s: CorpusStore, rescore: str = "int8"):
        return lambda: [
            s.search(q, K, scan="hamming", rescore=rescore, threads=THREADS) for q in queries
        ]

    for q, qb in zip(queries, query_bits):
        distances, candidates = kernel(qb)
        expected = public_rescore(q, codes, candidates, store.calibration)
        same(store.search(q, K, scan="hamming", threads=THREADS), expected, "store.search")
        same(
            memory_store.search(q, K, scan="hamming", threads=THREADS),
            expected,
            "store.search, bits in memory",
        )
        scores, ids = store.search(q, K, scan="hamming", rescore="none", threads=THREADS)
        if not np.array_equal(ids, candidates[:, :K]) or not np.array_equal(
            scores, (DIM - 2 * distances[:, :K]).astype(np.float32)
        ):
            raise AssertionError("rescore='none' differs from the kernel's Hamming order")
    engines = {
        "kernel": lambda: [kernel(qb) for qb in query_bits],
        "search": search(store),
        "search-none": search(store, "none"),
        "search-bits": search(store, "bits"),
        "search-bits-in-memory": search(memory_store),
    }
    medians = alternate(engines, rounds=1 if quick else {1: 21, 16: 9}[batch])
    return {
        "batch": batch,
        "calls": calls,
        "median_seconds": medians,
        "ms_per_query": {name: 1e3 * s / (calls * batch) for name, s in medians.items()},
        "over_kernel": {name: s / medians["kernel"] for name, s in medians.items()},
    }


def appends(work: Path, rows: int, quick: bool) -> dict:
    """Part 3: median seconds of appending, quantizing and checksumming ``rows`` x 384-d rows."""
    batch_rows = max(1, rows // 4) if quick else APPEND_BATCH_ROWS
    data = list(batches(SEED + 1, rows, APPEND_DIM, batch_rows))
    fresh = itertools.count()

    def append_all() -> CorpusStore:
        store = CorpusStore.create(work / f"append-{next(fresh)}.fq", APPEND_DIM)
        for batch in data:
            store.append(batch)
        store.close()
        return store

    def quantize_only():  # what append computes before writing: checks, ranges, all three files
        for batch in data:
            as_embeddings("embeddings_f32", batch, 2)
        calibration, centre = Calibration.from_embeddings(data[0]), centre_of(data[0])
        return [
            (*centred_checked(part, centre), quantize_checked(part, "int8", calibration))
            for batch in data
            for part in (
                batch[lo : lo + APPEND_SLICE_ROWS] for lo in range(0, len(batch), APPEND_SLICE_ROWS)
            )
        ]

    quantized = quantize_only()

    def crc_only():
        return [tuple(map(zlib.crc32, files)) for files in quantized]

    store = append_all()
    corpus = store.snapshot.corpus
    held = tuple(map(np.concatenate, (corpus.bits, corpus.factors, corpus.codes)))
    expected = tuple(np.concatenate(column) for column in zip(*quantized))
    if len(store) != rows or not all(np.array_equal(a, b) for a, b in zip(held, expected)):
        raise AssertionError("the appended store does not hold exactly the quantized rows")
    if store.verify() != rows * (APPEND_DIM + APPEND_DIM // 8 + 4):
        raise AssertionError("verify did not check every appended byte")
    shutil.rmtree(store.path)
    medians = alternate(
        {
            "append": lambda: shutil.rmtree(append_all().path),
            "quantize": quantize_only,
            "crc": crc_only,
        },
        rounds=1 if quick else 3,
    )
    io_seconds = medians["append"] - medians["quantize"] - medians["crc"]
    return {
        "rows": rows,
        "batch_rows": batch_rows,
        "median_seconds": medians,
        "rows_per_second": rows / medians["append"],
        "rows_per_minute": 60 * rows / medians["append"],
        "share": {
            "quantize": medians["quantize"] / medians["append"],
            "crc": medians["crc"] / medians["append"],
            "io_and_commit": io_seconds / medians["append"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--rows", type=int, help="store rows (1,000,000; 20,000 with --quick)")
    args = parser.parse_args(argv)
    run = record.Run("store", args, argv)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="fastquant-store-bench-") as work:
        store = build_store(Path(work) / "corpus.fq", rows, DIM, seed=SEED, bits="sign")
        store = CorpusStore.open(store.path)
        bits = np.concatenate(store.snapshot.corpus.bits)
        codes = np.concatenate(store.snapshot.corpus.codes)
        rescoring = warm_rescoring(store, bits, codes, args.quick)
        search = [search_vs_kernel(store, bits, codes, batch, args.quick) for batch in (1, 16)]
        del store, bits, codes
        append = appends(Path(work), rows, args.quick)
    run.save(
        threads="2 for searches, 1 for rescoring",
        shapes={
            "store rows": rows,
            "store dim": DIM,
            "k": K,
            "rescore multiplier": MULTIPLIER,
            "append rows": rows,
            "append dim": APPEND_DIM,
            "append batch rows": append["batch_rows"],
        },
        rescoring=rescoring,
        search=search,
        append=append,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
