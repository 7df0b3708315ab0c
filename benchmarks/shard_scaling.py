"""Sharded search on a local Dask cluster: 1 vs 2 workers, and its overhead over one store.

Usage::

    python benchmarks/shard_scaling.py                  # 1M x 1024-d in 2 shards (builds ~2.3 GB once)
    python benchmarks/shard_scaling.py --quick          # 20k rows, one round: checks the mechanics

The corpus (``lib/synthetic.py``: unit gaussian rows, seed fixed) is stored twice under ``--root``:
as one store, and as ``--shards`` stores of consecutive rows created with the one store's int8
ranges (both are reused by later runs when they hold the expected rows). Two ``LocalCluster``s
run side by side, one worker process and two, each worker with one thread. For query batches of
1, 16 and 256 rows (noisy copies of stored rows), k = 10, rescore multiplier 4, the engines of
``ENGINES`` run in alternating rounds, in a shuffled order per round (``lib/rounds.py``). Each
worker stands for one machine, so ``1-worker`` / ``2-workers`` is the scaling of adding a machine
per shard. ``client-merge`` (reported, not an engine) is the client's own arithmetic: merging
the shards' ``(q, 40)`` Hamming lists and taking the top 10 of the rescored candidates, timed
alone.

Check: before timing, every engine's answer to the first batch of each size is exactly the one
store's (scores and ids).
"""

from __future__ import annotations

import os

# Numba's OpenMP threads spin after each parallel region by default, stealing the core of the
# other worker process on the same machine; idle threads must sleep (inherited by the workers).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fastquant import CorpusStore
from fastquant._engine import FAR_DISTANCE, merge_sorted, top_by_score
from lib import record
from lib.rounds import alternate_calls
from lib.synthetic import build_store, corpus_slice, noisy_queries

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastquant-bench"
DIM, SEED, K, MULTIPLIER = 1024, 20261121, 10, 4
BUILD_BATCH_ROWS = 100_000
BATCHES = (1, 16, 256)
#: Query batches timed per engine and round, by batch size.
CALLS = {1: 16, 16: 4, 256: 1}
ENGINES = {
    "single": "CorpusStore.search of the one store in this process, 2 threads",
    "dask-1-shard": "fastquant.distributed.search of the one store on the 1-worker cluster, "
    "2 threads: the cost of going through Dask with nothing to merge",
    "1-worker-2-threads": "the shards on the 1-worker cluster, 2 threads per shard task",
    "1-worker": "the shards on the 1-worker cluster, 1 thread per shard task",
    "2-workers": "the shards on the 2-worker cluster, 1 thread per shard task",
    "dask-floor": "two rounds of one no-op task per shard on the 2-worker cluster, with the "
    "queries as argument: Dask's own latency, below which no distributed search can go",
}


def _holds(path: Path, rows: int, calibration: tuple | None = None) -> bool:
    """Whether ``path`` is a centred store of ``rows`` rows (with these int8 ranges and centre,
    if given)."""
    try:
        store = CorpusStore.open(path)
    except (OSError, ValueError):
        return False
    if len(store) != rows or not store.manifest.centred:
        return False
    ranges, centre = calibration or (store.calibration.ranges, store.snapshot.corpus.centre)
    return np.array_equal(store.calibration.ranges, ranges) and np.array_equal(
        store.snapshot.corpus.centre, centre
    )


def ensure_stores(root: Path, rows: int, shards: int) -> tuple[Path, list[Path]]:
    """The one store and its shards for ``rows`` x ``DIM`` rows under ``root``, built if needed."""
    single = root / f"single-{rows}x{DIM}.fq"
    if not _holds(single, rows):
        shutil.rmtree(single, ignore_errors=True)
        print(f"building {single}", flush=True)
        build_store(single, rows, DIM, seed=SEED)
    single_store = CorpusStore.open(single)
    ranges, centre = single_store.calibration.ranges, single_store.snapshot.corpus.centre
    bounds = [rows * i // shards for i in range(shards + 1)]
    paths = []
    for i in range(shards):
        path = root / f"shards-{rows}x{DIM}" / f"shard-{i}-of-{shards}.fq"
        lo, hi = bounds[i], bounds[i + 1]
        if not _holds(path, hi - lo, (ranges, centre)):
            shutil.rmtree(path, ignore_errors=True)
            print(f"building {path}", flush=True)
            store = CorpusStore.create(path, DIM, ranges=ranges, centre=centre)
            for start in range(lo, hi, BUILD_BATCH_ROWS):
                store.append(corpus_slice(SEED, start, min(start + BUILD_BATCH_ROWS, hi), DIM))
            store.close()
        paths.append(path)
    return single, paths


def _noop(*args: object) -> None:
    """A task that does nothing with its arguments."""


def _floor(client: Client, queries: np.ndarray, shards: int) -> None:
    """Dask's share of a search: two rounds of one no-op task per shard, taking the queries."""
    for _ in range(2):
        client.gather([client.submit(_noop, i, queries, pure=False) for i in range(shards)])


def measure(single: Path, shards: list[Path], batch_sizes: tuple[int, ...], rounds: int) -> dict:
    """Time every engine per batch size (see the module docstring); ms per query and ratios."""
    from distributed import Client, LocalCluster

    from fastquant import distributed as fqd

    store = CorpusStore.open(single)
    cluster = {"processes": True, "threads_per_worker": 1, "dashboard_address": ":0"}
    report: dict = {}
    with (
        LocalCluster(n_workers=1, **cluster) as one,
        Client(one) as one_worker,
        LocalCluster(n_workers=2, **cluster) as two,
        Client(two) as two_workers,
    ):
        for batch in batch_sizes:
            calls = CALLS[batch]
            queries, _ = noisy_queries(SEED, len(store), DIM, calls * batch, query_seed=batch)
            queries = queries.reshape(calls, batch, DIM)

            def sharded(client: Client, paths: list[Path], threads: int, queries=queries):
                return lambda i: fqd.search(
                    client, paths, queries[i], K, rescore_multiplier=MULTIPLIER, threads=threads
                )

            engines = {
                "single": lambda i, queries=queries: store.search(
                    queries[i], K, rescore_multiplier=MULTIPLIER, threads=2
                ),
                "dask-1-shard": sharded(one_worker, [single], 2),
                "1-worker-2-threads": sharded(one_worker, shards, 2),
                "1-worker": sharded(one_worker, shards, 1),
                "2-workers": sharded(two_workers, shards, 1),
                "dask-floor": lambda i, queries=queries: _floor(
                    two_workers, queries[i], len(shards)
                ),
            }
            report[str(batch)] = _timed(engines, batch, calls, rounds)
            report[str(batch)]["client_merge_ms_per_query"] = client_merge_ms(batch, len(shards))
            ms = report[str(batch)]["ms_per_query"]
            print(f"batch {batch}: " + ", ".join(f"{n} {v:.3f} ms" for n, v in ms.items()))
    return report


def client_merge_ms(batch: int, shards: int) -> float:
    """Median ms per query of the client's merge of ``shards`` Hamming lists and final top k."""
    rng = np.random.default_rng(batch)
    width = K * MULTIPLIER
    distances = [
        np.sort(rng.integers(0, DIM, (batch, width), dtype=np.int32)) for _ in range(shards)
    ]
    ids = [np.sort(rng.choice(1 << 20, (batch, width))) + (i << 20) for i in range(shards)]
    scores = rng.standard_normal((batch, width), dtype=np.float32)

    def merge() -> None:
        _, candidates = merge_sorted(distances, ids, width, FAR_DISTANCE)
        top_by_score(scores, candidates, K)

    seconds = alternate_calls({"merge": lambda i: merge()}, 200, 1)["merge"]
    return 1e3 * float(np.median(seconds)) / batch


def _timed(engines: dict, batch: int, calls: int, rounds: int) -> dict:
    """Check every search engine against ``single`` on call 0, then time them in rounds."""
    expected = engines["single"](0)
    for name in list(ENGINES)[1:-1]:
        got = engines[name](0)
        if not all(np.array_equal(a, b) for a, b in zip(got, expected)):
            raise AssertionError(f"{name} does not return exactly the single store's answer")
    seconds = alternate_calls(engines, calls, rounds)
    ms = {name: 1e3 * float(np.median(seconds[name])) / batch for name in ENGINES}
    return {
        "calls_per_round": calls,
        "ms_per_query": ms,
        "identical_to_single": True,
        "ratios": {
            "1-worker / 2-workers": ms["1-worker"] / ms["2-workers"],
            "2-workers / single": ms["2-workers"] / ms["single"],
            "1-worker-2-threads / single": ms["1-worker-2-threads"] / ms["single"],
            "dask-1-shard / single": ms["dask-1-shard"] / ms["single"],
            "1-worker-2-threads / dask-1-shard": ms["1-worker-2-threads"] / ms["dask-1-shard"],
            "dask-floor / 2-workers": ms["dask-floor"] / ms["2-workers"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--rows", type=int, help="corpus rows (1,000,000; 20,000 with --quick)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rounds", type=int, help="timing rounds (default 7; 1 with --quick)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where stores are built")
    args = parser.parse_args(argv)
    record.require("distributed")
    run = record.Run("shard_scaling", args, argv)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 7)
    batch_sizes = BATCHES[:2] if args.quick else BATCHES
    single, shards = ensure_stores(args.root, rows, args.shards)
    run.save(
        threads="2 in-process; per shard task as each engine says",
        shapes={
            "rows": rows,
            "dim": DIM,
            "shards": args.shards,
            "batches": list(batch_sizes),
            "k": K,
            "rescore multiplier": MULTIPLIER,
        },
        rounds=rounds,
        engines=ENGINES,
        batches=measure(single, shards, batch_sizes, rounds),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
