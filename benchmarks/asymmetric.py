"""End-to-end search speed of the candidate scans, head to head with faiss RaBitQ, in one run.

Usage::

    python benchmarks/asymmetric.py           # 1M x 1024 and 1M x 384, batches 1, 16, 256
    python benchmarks/asymmetric.py --quick   # 20k rows, one round

Each shape's corpus (normalized gaussian rows, ``lib/synthetic.py``) is stored twice: with
centred bits (the default) and with sign bits (fastquant 0.1's layout); faiss indexes hold the
same rows. Every engine answers k = 10 with 40 candidates (rescore multiplier 4) rescored
against the same int8 codes, 2 threads, queries that are noisy copies of stored rows:

- ``asymmetric``: ``CorpusStore.search`` of the centred store, the default route (the coarse
  ternary scan narrowed by the 4-bit score);
- ``asymmetric-exact``: ``search(scan="asymmetric-exact")`` of the centred store, every row's
  4-bit score;
- ``hamming``: ``search(scan="hamming")`` of the sign store, fastquant 0.1's route;
- ``hamming+asymmetric``: ``search(scan="hamming+asymmetric")`` of the centred store;
- ``faiss RaBitQ FastScan``, ``faiss RaBitQ``: ``IndexRaBitQFastScan`` / ``IndexRaBitQ`` with
  4-bit queries (``qb = 4``) for the 40 candidates, then ``fastquant.rescore_int8`` of them;
- ``read`` (batch 1): the bandwidth probe reading the centred store's bits and row factors once,
  the physical limit of a one-query scan.

Engines run in alternating rounds; figures are medians and their ratios. Exhaustive scans cost
the same whatever the data, so recall is not measured here: the renderer pairs these speeds
with the recall each engine reaches on real embeddings in ``results/quality.json``.

Checks: the store's default search equals its first stage (``fastquant._engine.candidates``)
rescored with ``rescore_int8``; faiss returns real row ids; every engine finds most queries'
source row.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see lib/record.py

import sys
import tempfile
from pathlib import Path

import numpy as np

from fastquant import CorpusStore, _engine, rescore_int8
from lib import record
from lib.bandwidth import read_all
from lib.rounds import alternate, faiss_threads
from lib.synthetic import batches, build_store, noisy_queries

SHAPES = ((1_000_000, 1024), (1_000_000, 384))
BATCHES = (1, 16, 256)
K, MULTIPLIER, THREADS, SEED = 10, 4, 2, 20261121
#: Query batches per engine and round, by batch size; rounds by batch size.
CALLS = {1: 16, 16: 4, 256: 1}
ROUNDS = {1: 9, 16: 7, 256: 5}
ENGINES = {
    "asymmetric": "CorpusStore.search of centred bits (the default scan: the ternary scan "
    "narrowed by the 4-bit score)",
    "asymmetric-exact": "CorpusStore.search(scan='asymmetric-exact') of centred bits",
    "hamming": "CorpusStore.search(scan='hamming') of sign bits (fastquant 0.1)",
    "hamming+asymmetric": "CorpusStore.search(scan='hamming+asymmetric') of centred bits",
    "faiss RaBitQ FastScan": "faiss IndexRaBitQFastScan, qb=4, + fastquant.rescore_int8",
    "faiss RaBitQ": "faiss IndexRaBitQ, qb=4, + fastquant.rescore_int8",
    "read": "bandwidth probe: the centred store's bits and row factors read once (batch 1)",
}


def faiss_engine(index_name: str, rows: int, dim: int, codes: np.ndarray, calibration):
    """``search(queries) -> ids (q, K)``: a faiss RaBitQ index's 40 candidates, int8-rescored."""
    import faiss

    index = getattr(faiss, index_name)(dim, faiss.METRIC_INNER_PRODUCT)
    index.train(next(batches(SEED, min(rows, 100_000), dim, 100_000)))
    for batch in batches(SEED, rows, dim, 100_000):
        index.add(batch)
    params = None
    if index_name == "IndexRaBitQ":
        params = faiss.RaBitQSearchParameters()
        params.qb = 4
    else:
        index.qb = 4

    def search(queries: np.ndarray) -> np.ndarray:
        with faiss_threads(THREADS):
            _, found = index.search(queries, K * MULTIPLIER, params=params)
        if (found < 0).any():
            raise AssertionError(f"{index_name} returned fewer than {K * MULTIPLIER} rows")
        return rescore_int8(codes, queries, found, K, calibration=calibration)[1]

    return search


def measure_shape(work: Path, rows: int, dim: int, quick: bool) -> dict:
    """Every engine at every batch size on one ``rows x dim`` corpus."""
    centred = build_store(work / f"centred-{dim}.fq", rows, dim, seed=SEED)
    sign = build_store(work / f"sign-{dim}.fq", rows, dim, seed=SEED, bits="sign")
    centred, sign = CorpusStore.open(centred.path), CorpusStore.open(sign.path)
    codes = np.concatenate(sign.snapshot.corpus.codes)
    engines = {
        "asymmetric": lambda q: centred.search(q, K, threads=THREADS)[1],
        "asymmetric-exact": lambda q: centred.search(
            q, K, scan="asymmetric-exact", threads=THREADS
        )[1],
        "hamming": lambda q: sign.search(q, K, scan="hamming", threads=THREADS)[1],
        "hamming+asymmetric": lambda q: centred.search(
            q, K, scan="hamming+asymmetric", threads=THREADS
        )[1],
        "faiss RaBitQ FastScan": faiss_engine(
            "IndexRaBitQFastScan", rows, dim, codes, sign.calibration
        ),
        "faiss RaBitQ": faiss_engine("IndexRaBitQ", rows, dim, codes, sign.calibration),
    }
    corpus = centred.snapshot.corpus
    scanned = [part.reshape(-1) for part in (*corpus.bits, *corpus.factors)]
    scanned_bytes = sum(part.nbytes for part in scanned)
    cases = []
    for batch in BATCHES:
        calls = CALLS[batch]
        queries, sources = noisy_queries(SEED, rows, dim, calls * batch, query_seed=batch)
        queries, sources = queries.reshape(calls, batch, dim), sources.reshape(calls, batch)
        _check(centred, corpus, engines, queries, sources)
        timed = {
            name: (lambda run=run, queries=queries: [run(q) for q in queries])
            for name, run in engines.items()
        }
        if batch == 1:
            timed["read"] = lambda calls=calls: [
                read_all(part, THREADS) for part in scanned for _ in range(calls)
            ]
        medians = alternate(timed, rounds=1 if quick else ROUNDS[batch])
        per_second = {name: calls * batch / seconds for name, seconds in medians.items()}
        case = {
            "batch": batch,
            "calls": calls,
            "median_seconds": medians,
            "queries_per_second": per_second,
            "vs_faiss_fastscan": {
                n: per_second[n] / per_second["faiss RaBitQ FastScan"] for n in engines
            },
            "vs_hamming": {n: per_second[n] / per_second["hamming"] for n in engines},
        }
        if batch == 1:
            case["read_gb_per_s"] = scanned_bytes * calls / medians["read"] / 1e9
            case["share_of_read_bandwidth"] = medians["read"] / medians["asymmetric"]
        cases.append(case)
        print(f"{rows:,} x {dim}, batch {batch}: " + ", ".join(
            f"{n} {v:,.0f} q/s" for n, v in per_second.items()), flush=True)  # fmt: skip
    return {"rows": rows, "dim": dim, "scanned_bytes": scanned_bytes, "cases": cases}


def _check(store, corpus, engines, queries, sources) -> None:
    """The checks of the module docstring, on one batch size's queries."""
    first = queries[0]
    candidates = _engine.candidates(corpus, first, K * MULTIPLIER, "asymmetric", "numba", THREADS)[
        1
    ]
    codes = np.concatenate(corpus.codes)
    expected = rescore_int8(codes, first, candidates, K, calibration=corpus.calibration)
    got = store.search(first, K, threads=THREADS)
    if not all(np.array_equal(a, b) for a, b in zip(got, expected)):
        raise AssertionError("the default search differs from its candidates rescored")
    for name, run in engines.items():
        found = np.concatenate([run(q)[:, 0] for q in queries])
        if (found == sources.reshape(-1)).mean() < 0.8:
            raise AssertionError(f"{name} misses most queries' source rows")


def recall_from_quality(quality: dict | None) -> dict | None:
    """Recall@10 by multiplier of each engine on the first model's first quality case."""
    if quality is None:
        return None
    model = next(iter(quality["models"].values()))
    case = model["cases"][0]
    names = {
        "asymmetric": "asymmetric",
        "asymmetric-exact": "asymmetric-exact",
        "hamming": "int8 rescore",
        "hamming+asymmetric": "hamming+asymmetric",
        "faiss RaBitQ FastScan": "faiss RaBitQ FastScan",
        "faiss RaBitQ": "faiss RaBitQ",
    }
    return {
        "model": model["name"],
        "case": f"{case['corpus']} x {case['queries']}",
        "commit": quality.get("commit"),
        "recall_by_multiplier": {
            engine: case["recall_by_multiplier"][key]
            for engine, key in names.items()
            if key in case["recall_by_multiplier"]
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    args = parser.parse_args(argv)
    record.require("faiss")
    run = record.Run("asymmetric", args, argv)
    shapes = ((20_000, 1024), (20_000, 384)) if args.quick else SHAPES
    with tempfile.TemporaryDirectory(prefix="fastquant-asymmetric-") as work:
        results = [measure_shape(Path(work), rows, dim, args.quick) for rows, dim in shapes]
    quality_file = record.RESULTS_DIR / "quality.json"
    quality = None
    if quality_file.exists():
        import json

        quality = json.loads(quality_file.read_text())
    run.save(
        threads=[THREADS],
        shapes={
            "corpora": [list(shape) for shape in shapes],
            "batches": list(BATCHES),
            "k": K,
            "candidates": K * MULTIPLIER,
        },  # fmt: skip
        engines=ENGINES,
        results=results,
        recall=recall_from_quality(quality),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
