"""A store that changes: search after deletes, filtered search, the gathered scan, deletes, compaction.

Usage::

    python benchmarks/mutable.py           # a 1M x 1024-d store (cached in benchmarks/.cache)
    python benchmarks/mutable.py --quick   # 20k rows, one round

The store holds normalized gaussian rows (``lib/synthetic.py``), built once and kept in
``benchmarks/.cache/stores``; every change is made to a copy. Queries are noisy copies of stored rows; ``CorpusStore.search`` runs its
default route (asymmetric scan, int8 rescoring x4), k = 10, 2 threads. Engines compared in a
part run in alternating rounds, in a shuffled order per round (``lib/rounds.py``); the figures
are medians and their ratios.

1. Deletes: the store with 10% of its rows deleted (random ids) against the same store with
   none, batches of 1 and 16 queries.
2. Filtered search: ``filter=`` random allowed ids at 0.1%, 1%, 10% and 50% of the rows, against
   no filter (the default route, which scores only the allowed rows when they are at most
   ``GATHER_FRACTION`` of the rows); the cost of turning the ids (or a boolean mask) into the
   scan's bitmaps; faiss ``IndexFlatIP`` of the float rows with
   ``SearchParameters(sel=IDSelectorBatch(ids))`` against the same index unfiltered, the float
   reference. usearch's Python ``Index.search`` takes no filter (recorded from its signature),
   and faiss's binary indexes take no selector (recorded from what faiss does with one).
3. Where the gathered scan pays: filtered search with ``GATHER_FRACTION`` forced to 0 (always the
   scan with the allow bitmap) and to 1 (always score the allowed rows alone), selectivities
   0.01% to 20%, batches 1 and 16; the crossover is where the two cost the same.
4. Deletes per second: calls of 1 and 1,000 ids into the store with 10% deleted, and the
   deletes of those 10% (100,000 ids, one call) into a store with none; each call is one
   committed delete. Compaction of the store with 10% deleted, in MB/s of the store's bytes
   before, against a plain copy of those files with ``fsync``.

Checks, on a 50,000-row store in the same run (5,000 with ``--quick``): at every selectivity,
with the gathered scan forced on, forced off and by default, ``search`` (a batch and a single
query) and ``exact_search`` with a filter return exactly, ids and scores, what a fresh store of
the allowed rows (same int8 ranges and centre) returns; a boolean mask gives what the ids give;
the store with 10% deleted answers like a fresh store of the survivors, before and after
compaction, which also verifies; faiss's filtered answer matches float64 dot products over the
allowed rows. On the large store: no deleted id is ever returned, compaction changes no answer
and returns the bytes it reports.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # faiss timed beside Numba: lib/record.py

import numpy as np  # noqa: E402

from fastquant import CorpusStore  # noqa: E402
from fastquant.store.corpus import _filtered  # noqa: E402
from fastquant.store.manifest import CHUNK_DIR  # noqa: E402
from lib import record  # noqa: E402
from lib.rounds import alternate, faiss_threads  # noqa: E402
from lib.synthetic import (  # noqa: E402
    batches,
    build_store,
    cached_store,
    corpus_slice,
    noisy_queries,
)

#: The module whose ``GATHER_FRACTION`` part 3 forces (``fastquant._engine.search`` the name is
#: also the function ``search``, re-exported by the package).
SEARCH_MODULE = sys.modules["fastquant._engine.search"]
CACHE_DIR = record.BENCHMARKS_DIR / ".cache" / "stores"
DIM, SEED, K, THREADS = 1024, 20261121, 10, 2
BATCHES = (1, 16)
#: Query batches per engine and round, by batch size.
CALLS = {1: 8, 16: 2}
DELETED_FRACTION = 0.1
SELECTIVITIES = (0.001, 0.01, 0.1, 0.5)
CROSSOVER_SELECTIVITIES = (
    0.0001, 0.0003, 0.001, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2,
)  # fmt: skip
#: Ids per delete call, and calls per round, into the store with ``DELETED_FRACTION`` deleted
#: (part 4; the deletes of that fraction into a store with none are timed before compactions).
DELETE_CALLS = {1: 8, 1000: 4}


def query_batches(rows: int, batch: int) -> np.ndarray:
    """``(calls, batch, DIM) float32`` noisy copies of stored rows."""
    queries, _ = noisy_queries(SEED, rows, DIM, CALLS[batch] * batch, query_seed=batch)
    return queries.reshape(CALLS[batch], batch, DIM)


def copy_store(source: Path, target: Path) -> Path:
    """A copy of the store at ``source`` (a writer refuses hard-linked chunk files)."""
    shutil.copytree(source, target)
    return target


def random_ids(rng: np.random.Generator, rows: int, fraction: float) -> np.ndarray:
    """``(max(1, fraction * rows),) int64`` distinct ids in ``[0, rows)``, ascending."""
    return np.sort(rng.choice(rows, size=max(1, round(fraction * rows)), replace=False))


def as_mask(ids: np.ndarray, rows: int) -> np.ndarray:
    """``(rows,) bool``: true at ``ids``."""
    mask = np.zeros(rows, dtype=bool)
    mask[ids] = True
    return mask


@contextmanager
def gather_fraction(fraction: float) -> Iterator[None]:
    """The engine's ``GATHER_FRACTION`` set to ``fraction`` inside the block."""
    previous = SEARCH_MODULE.GATHER_FRACTION
    SEARCH_MODULE.GATHER_FRACTION = fraction
    try:
        yield
    finally:
        SEARCH_MODULE.GATHER_FRACTION = previous


def searches(store: CorpusStore, queries: np.ndarray, **options) -> Callable[[], list]:
    """One engine: ``store.search`` of every query batch, k = ``K``, ``THREADS`` threads."""
    return lambda: [store.search(q, K, threads=THREADS, **options) for q in queries]


def per_query(medians: dict[str, float], queries: int) -> dict[str, float]:
    return {name: 1e3 * seconds / queries for name, seconds in medians.items()}


def same(got: tuple, expected: tuple, what: str) -> None:
    """Raise unless ``got`` and ``expected`` (scores, ids) are equal."""
    if not all(np.array_equal(a, b) for a, b in zip(got, expected)):
        raise AssertionError(f"{what} differs from a fresh store of the allowed rows")


# -- checks on a small store ----------------------------------------------------------------


def fresh_store(path: Path, source: CorpusStore, rows: np.ndarray) -> CorpusStore:
    """A new store of ``rows (m, DIM) float32`` with ``source``'s int8 ranges and centre."""
    store = CorpusStore.create(
        path, DIM, ranges=source.calibration.ranges, centre=source.snapshot.corpus.centre
    )
    store.append(rows)
    return store


def check_answers(
    store: CorpusStore, fresh: CorpusStore, allowed: np.ndarray, what: str, **options
):
    """``store`` (searched with ``options``) answers like ``fresh``, whose row i is ``allowed[i]``."""
    queries, _ = noisy_queries(SEED, store.next_id, DIM, 16, query_seed=3)

    def mapped(answer: tuple) -> tuple:
        return answer[0], allowed[answer[1]]

    for fraction in (0.0, 1.0, SEARCH_MODULE.GATHER_FRACTION):
        with gather_fraction(fraction):
            same(store.search(queries, K, **options), mapped(fresh.search(queries, K)), what)
            same(store.search(queries[0], K, **options), mapped(fresh.search(queries[0], K)), what)
    same(store.exact_search(queries, K, **options), mapped(fresh.exact_search(queries, K)), what)


def check_exactness(work: Path, rows: int, selectivities: list[float]) -> dict:
    """Filters and deletes on a ``rows``-row store answer like fresh stores (see the docstring)."""
    store = CorpusStore.open(build_store(work / "check.fq", rows, DIM, seed=SEED).path)
    floats = corpus_slice(SEED, 0, rows, DIM)
    rng = np.random.default_rng(1)
    for i, fraction in enumerate(selectivities):
        allowed = random_ids(rng, rows, fraction)
        fresh = fresh_store(work / f"allowed-{i}.fq", store, floats[allowed])
        check_answers(store, fresh, allowed, f"filter of {fraction:.2%}", filter=allowed)
        mask = as_mask(allowed, rows)
        check_answers(store, fresh, allowed, f"mask of {fraction:.2%}", filter=mask)
    deleted = CorpusStore.open(copy_store(store.path, work / "deleted.fq"))
    dead = random_ids(rng, rows, DELETED_FRACTION)
    deleted.delete(dead)
    survivors = np.setdiff1d(np.arange(rows), dead)
    fresh = fresh_store(work / "survivors.fq", store, floats[survivors])
    check_answers(deleted, fresh, survivors, "a store with deletes")
    deleted.compact()
    deleted.verify()
    check_answers(deleted, fresh, survivors, "a compacted store")
    return {"rows": rows, "selectivities": selectivities, "faiss": check_faiss(store, floats, rng)}


def check_faiss(store: CorpusStore, floats: np.ndarray, rng: np.random.Generator) -> dict:
    """faiss's filtered searches against exact ones: ``IndexFlatIP`` against float64 dot
    products, ``IndexBinaryFlat`` of the store's bits against the store's Hamming scan (scores
    ``dim - 2 * distance``), each over the allowed rows only."""
    import faiss

    index = faiss.IndexFlatIP(DIM)
    index.add(floats)
    queries, _ = noisy_queries(SEED, len(floats), DIM, 16, query_seed=3)
    allowed = random_ids(rng, len(floats), 0.01)
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
    scores, ids = index.search(queries, K, params=params)
    exact = queries.astype(np.float64) @ floats[allowed].astype(np.float64).T
    best = -np.sort(-exact, axis=1)[:, :K]
    if not np.all(np.isin(ids, allowed)) or not np.allclose(scores, best, atol=1e-5):
        raise AssertionError("faiss's filtered IndexFlatIP differs from exact float search")
    binary = binary_index(store)
    try:
        distances, ids = binary.search(store_query_bits(store, queries), K, params=params)
    except (RuntimeError, TypeError) as error:  # faiss before 1.10 took no selector here
        return {"binary_filters": False, "binary_error": str(error).strip().splitlines()[0]}
    hamming = store.search(queries, K, scan="hamming", rescore="none", filter=allowed)[0]
    exact = np.all(np.isin(ids, allowed)) and np.array_equal(DIM - 2 * distances, hamming)
    return {"binary_filters": True, "binary_filtered_exact": bool(exact)}


def binary_index(store: CorpusStore):
    """``faiss.IndexBinaryFlat`` of the store's bits (in memory)."""
    import faiss

    index = faiss.IndexBinaryFlat(DIM)
    for bits in store.snapshot.corpus.bits:
        index.add(np.ascontiguousarray(bits))
    return index


def store_query_bits(store: CorpusStore, queries: np.ndarray) -> np.ndarray:
    """``(q, DIM / 8) uint8``: the queries' bits as the store makes them (``q > centre``)."""
    return SEARCH_MODULE.query_bits(store.snapshot.corpus, queries)


def usearch_filter() -> dict:
    """What the installed usearch's ``Index.search`` takes: whether it can filter from Python."""
    from usearch.index import Index

    names = [name for name in inspect.signature(Index.search).parameters if name != "self"]
    can = any(word in name for name in names for word in ("filter", "predicate"))
    return {"version": version("usearch"), "search_parameters": names, "filters": can}


# -- parts 1 to 3: searches ------------------------------------------------------------------


def deleted_vs_none(pristine: CorpusStore, deleted: CorpusStore, rounds: int) -> list[dict]:
    """Part 1: ms per query of the store with ``DELETED_FRACTION`` deleted and with none."""
    dead = deleted.snapshot.deleted
    cases = []
    for batch in BATCHES:
        queries = query_batches(len(pristine), batch)
        for q in queries:
            if np.isin(deleted.search(q, K, threads=THREADS)[1], dead).any():
                raise AssertionError("a search returned a deleted id")
        medians = alternate(
            {"none": searches(pristine, queries), "deleted": searches(deleted, queries)}, rounds
        )
        cases.append(
            {
                "batch": batch,
                "ms_per_query": per_query(medians, queries.size // DIM),
                "speed_deleted_over_none": medians["none"] / medians["deleted"],
            }
        )
    return cases


def faiss_index(rows: int):
    """``faiss.IndexFlatIP`` of the store's float rows."""
    import faiss

    index = faiss.IndexFlatIP(DIM)
    for part in batches(SEED, rows, DIM, 100_000):
        index.add(part)
    return index


#: Part 2's engines: what each runs, and the peer it is compared with.
FILTER_ENGINES = {
    "fastquant": "CorpusStore.search, the default route (asymmetric scan, int8 rescoring x4)",
    "fastquant-hamming": "CorpusStore.search(scan='hamming', rescore='none'): the Hamming top k "
    "of the store's bits, faiss-binary's job",
    "faiss-float": "faiss IndexFlatIP of the float rows (4 GB), the float reference",
    "faiss-binary": "faiss IndexBinaryFlat of the store's bits, in memory",
}
#: Whom each engine is compared with in part 2.
PEERS = {"fastquant": "faiss-float", "fastquant-hamming": "faiss-binary"}


def filtered(store: CorpusStore, rounds: int, binary_filters: bool, quick: bool) -> list[dict]:
    """Part 2: ms per query of each engine of ``FILTER_ENGINES`` with each filter and none."""
    import faiss

    rows = store.next_id
    rng = np.random.default_rng(2)
    allowed = {fraction: random_ids(rng, rows, fraction) for fraction in SELECTIVITIES}
    float_index, binary = faiss_index(rows), binary_index(store)
    names = [name for name in FILTER_ENGINES if binary_filters or name != "faiss-binary"]
    cases = []
    for batch in BATCHES:
        queries = query_batches(rows, batch)
        bits = [store_query_bits(store, q) for q in queries]
        few = queries if quick else queries[:1]  # faiss-float takes 0.1 to 2 s a call

        def engine(
            name: str, ids: np.ndarray | None, queries=queries, bits=bits, few=few
        ) -> Callable[[], list]:
            if name.startswith("fastquant"):
                options = {"scan": "hamming", "rescore": "none"} if name != "fastquant" else {}
                return searches(store, queries, filter=ids, **options)
            params = None if ids is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))
            index, inputs = (float_index, few) if name == "faiss-float" else (binary, bits)
            return lambda: [index.search(x, K, params=params) for x in inputs]

        cuts = {None: None, **allowed}
        engines = {
            f"{name} {cut}": engine(name, ids) for name in names for cut, ids in cuts.items()
        }
        with faiss_threads(THREADS):
            medians = alternate(engines, rounds)
        ms = {
            key: 1e3 * s / batch / (len(few) if key.startswith("faiss-float") else len(queries))
            for key, s in medians.items()
        }
        points = []
        for fraction, ids in allowed.items():
            point = {
                "selectivity": fraction,
                "allowed_rows": int(ids.size),
                "gathered": bool(ids.size <= SEARCH_MODULE.GATHER_FRACTION * rows),
                "ms_per_query": {name: ms[f"{name} {fraction}"] for name in names},
                "speed_over_unfiltered": {
                    name: ms[f"{name} None"] / ms[f"{name} {fraction}"] for name in names
                },
                "speed_over_peer": {
                    name: ms[f"{peer} {fraction}"] / ms[f"{name} {fraction}"]
                    for name, peer in PEERS.items()
                    if peer in names
                },
            }
            points.append(point)
        unfiltered = {name: ms[f"{name} None"] for name in names}
        cases.append({"batch": batch, "unfiltered_ms_per_query": unfiltered, "points": points})
    return cases


def filter_preparation(store: CorpusStore, rounds: int) -> list[dict]:
    """Part 2: ms to turn a filter of ids, or a boolean mask, into the scan's allow bitmaps."""
    rows = store.next_id
    rng = np.random.default_rng(2)
    cases = []
    for fraction in SELECTIVITIES:
        ids = random_ids(rng, rows, fraction)
        mask = as_mask(ids, rows)
        medians = alternate(
            {
                "ids": lambda ids=ids: _filtered(store.snapshot, ids),
                "mask": lambda mask=mask: _filtered(store.snapshot, mask),
            },
            rounds,
        )
        ms = {name: 1e3 * s for name, s in medians.items()}
        cases.append({"selectivity": fraction, "ms": ms})
    return cases


def crossover(store: CorpusStore, rounds: int) -> list[dict]:
    """Part 3: ms per query, the scan with the allow bitmap against the gathered scan."""
    rows = store.next_id
    rng = np.random.default_rng(3)
    cases = []
    for batch in BATCHES:
        queries = query_batches(rows, batch)
        points = []
        for fraction in CROSSOVER_SELECTIVITIES:
            ids = random_ids(rng, rows, fraction)

            def forced(value: float, ids=ids, queries=queries) -> Callable[[], list]:
                search = searches(store, queries, filter=ids)

                def run() -> list:
                    with gather_fraction(value):
                        return search()

                return run

            medians = alternate({"scan": forced(0.0), "gathered": forced(1.0)}, rounds)
            ms = per_query(medians, queries.size // DIM)
            points.append(
                {
                    "selectivity": fraction,
                    "allowed_rows": int(ids.size),
                    "ms_per_query": ms,
                    "gathered_over_scan": ms["gathered"] / ms["scan"],
                }
            )
        cases.append({"batch": batch, "points": points, "crossover": crossing(points)})
    return cases


def crossing(points: list[dict]) -> float | None:
    """The selectivity where the gathered scan stops paying: log-interpolated between the last
    point it wins and the first it loses; None if it never loses (or never wins)."""
    for low, high in zip(points, points[1:]):
        a, b = np.log(low["gathered_over_scan"]), np.log(high["gathered_over_scan"])
        if a < 0 <= b:
            x0, x1 = np.log(low["selectivity"]), np.log(high["selectivity"])
            return float(np.exp(x0 + (x1 - x0) * a / (a - b)))
    return None


# -- part 4: deletes and compaction ---------------------------------------------------------


def delete_rate(store: CorpusStore, rounds: int) -> list[dict]:
    """Part 4: seconds per committed delete of ``size`` live ids, for the sizes of
    ``DELETE_CALLS``, into ``store``, which already lists deleted ids."""
    listed = store.deleted_rows
    live = np.setdiff1d(np.arange(store.next_id), store.snapshot.deleted)
    order = np.random.default_rng(4).permutation(live)
    taken = [0]

    def deletes(size: int, calls: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                ids = np.sort(order[taken[0] : taken[0] + size])
                taken[0] += size
                if store.delete(ids) != size:
                    raise AssertionError(f"deleting {size} live ids did not delete them all")

        return run

    medians = alternate({str(size): deletes(size, n) for size, n in DELETE_CALLS.items()}, rounds)
    if store.delete(store.snapshot.deleted[:8]) != 0:
        raise AssertionError("deleting deleted ids again deleted something")
    if store.deleted_rows != listed + taken[0] or len(store) != store.next_id - store.deleted_rows:
        raise AssertionError("len() and deleted_rows do not count the rows deleted")
    return [
        {
            "ids_per_call": size,
            "calls_per_round": calls,
            "listed_before": [listed, store.deleted_rows],
            "ms_per_call": 1e3 * medians[str(size)] / calls,
            "ids_per_second": size * calls / medians[str(size)],
        }
        for size, calls in DELETE_CALLS.items()
    ]


def fsynced_copy(source: Path, target: Path) -> None:
    """A plain copy of the store's files, each flushed to disk: compaction's reference."""
    shutil.copytree(source, target)
    for folder in (target, target / CHUNK_DIR):
        for file in folder.iterdir():
            if file.is_file():
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def compaction(source: Path, work: Path, dead: np.ndarray, rows: int, rounds: int) -> dict:
    """Part 4: compaction of ``source`` with ``dead`` deleted, against a copy of its files.

    Each round and engine starts from a fresh copy, into which ``dead`` are deleted (timed too:
    one delete into a store with none); then the compaction (or the copy) is timed. The first
    compacted store's answers are checked against its answers before.
    """
    queries, _ = noisy_queries(SEED, rows, DIM, 16, query_seed=5)
    seconds: dict[str, list[float]] = {"compact": [], "copy": []}
    deletes = []
    reports = []
    order = np.random.default_rng(5)
    for r in range(rounds):
        for engine in order.permutation(list(seconds)):
            store = CorpusStore.open(copy_store(source, work / f"compact-{r}.fq"))
            start = time.perf_counter()
            store.delete(dead)
            deletes.append(time.perf_counter() - start)
            before = store.search(queries, K, threads=THREADS)
            start = time.perf_counter()
            if engine == "compact":
                reports.append(store.compact())
            else:
                fsynced_copy(store.path, work / f"copy-{r}.fq")
            seconds[engine].append(time.perf_counter() - start)
            if engine == "compact" and r == 0:
                same(store.search(queries, K, threads=THREADS), before, "the compacted store")
            store.close()
            shutil.rmtree(store.path)
            shutil.rmtree(work / f"copy-{r}.fq", ignore_errors=True)
    report = reports[0]
    if report.rows_removed != dead.size or report.bytes_after >= report.bytes_before:
        raise AssertionError(f"compaction did not remove {dead.size} rows and their bytes")
    medians = {name: float(np.median(s)) for name, s in seconds.items()}
    mb = report.bytes_before / 1e6
    return {
        "rows_removed": report.rows_removed,
        "chunks_rewritten": report.chunks_rewritten,
        "bytes_before": report.bytes_before,
        "bytes_after": report.bytes_after,
        "bytes_returned": report.bytes_returned,
        "median_seconds": medians,
        "mb_per_second": {name: mb / s for name, s in medians.items()},
        "speed_compact_over_copy": medians["copy"] / medians["compact"],
        "delete": {
            "ids_per_call": int(dead.size),
            "calls_per_round": 1,
            "listed_before": [0, 0],
            "ms_per_call": 1e3 * float(np.median(deletes)),
            "ids_per_second": dead.size / float(np.median(deletes)),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--rows", type=int, help="store rows (1,000,000; 20,000 with --quick)")
    args = parser.parse_args(argv)
    record.require("faiss", "usearch")
    run = record.Run("mutable", args, argv)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    check_rows = 5_000 if args.quick else 50_000
    rounds = 1 if args.quick else 7
    with tempfile.TemporaryDirectory(prefix="fastquant-mutable-bench-") as folder:
        work = Path(folder)
        (work / "checks").mkdir()
        checks = check_exactness(
            work / "checks", check_rows, sorted({*SELECTIVITIES, *CROSSOVER_SELECTIVITIES})
        )
        checks["usearch"] = usearch_filter()
        source = cached_store(work if args.quick else CACHE_DIR, rows, DIM, seed=SEED)
        pristine = CorpusStore.open(source)
        deleted = CorpusStore.open(copy_store(source, work / "deleted.fq"))
        dead = random_ids(np.random.default_rng(6), rows, DELETED_FRACTION)
        deleted.delete(dead)
        deletes = deleted_vs_none(pristine, deleted, 4 * rounds + 1)
        crossovers = crossover(pristine, max(1, rounds - 2))
        preparation = filter_preparation(pristine, rounds)
        filters = filtered(
            pristine, max(1, rounds // 2), checks["faiss"]["binary_filters"], args.quick
        )
        rates = delete_rate(deleted, max(1, rounds // 2))
        deleted.close()
        compacted = compaction(source, work, dead, rows, 1 if args.quick else 3)
    run.save(
        threads=f"{THREADS} for searches (faiss too)",
        shapes={
            "store rows": rows,
            "store dim": DIM,
            "k": K,
            "batches": list(BATCHES),
            "deleted fraction": DELETED_FRACTION,
            "checked on rows": check_rows,
        },
        gather_fraction=SEARCH_MODULE.GATHER_FRACTION,
        filter_engines=FILTER_ENGINES,
        peers=PEERS,
        checks=checks,
        deletes=deletes,
        filters=filters,
        filter_preparation=preparation,
        crossover=crossovers,
        delete_rate=rates,
        compaction=compacted,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
