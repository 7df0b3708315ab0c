"""Search a store larger than the memory it may use: 2M x 1024-d (2.3 GB) in a 512 MiB cgroup.

Usage::

    python benchmarks/larger_than_ram.py                  # 2M rows (builds ~2.3 GB once)
    python benchmarks/larger_than_ram.py --quick          # 20k rows: checks the mechanics

The parent builds the store at ``--path`` (or reuses it when it already holds exactly this
corpus), then runs the same search child in a fresh cgroup-v1 memory cgroup (joined by a shell
that then ``exec``s Python, so every page the child touches is charged there): once without a
limit and once with ``memory.limit_in_bytes = --limit-mib``, alternating for ``--rounds``
rounds. The store's pages are evicted from the page cache before each child. Each child answers
``--queries`` queries (noisy copies of stored rows, fixed seed) one at a time, k = 10, rescore
multiplier 4, 2 threads, and measures per query:

- ``warm``: latency after a warm-up pass;
- ``cold``: every chunk file dropped from memory first (its mapped pages with
  ``madvise(MADV_DONTNEED)``, then ``posix_fadvise(POSIX_FADV_DONTNEED)``), so the query reads
  the whole bits (256 MB) and its 40 candidate rows from disk; ``read-bits`` reads the bits
  files sequentially after the same eviction, the disk's limit for that scan;
- ``cold-codes``: only the int8 codes dropped: a warm scan plus 40 rows fetched from disk;
- ``cold-rescore``: only the rescoring step (``fastquant._engine.score_int8``) after dropping the codes;

the cold ones with ``prefetch=True`` (``madvise(MADV_WILLNEED)`` of the candidates' pages) and
``prefetch=False``, alternating query by query, each with its major page faults. Memory: peak
RSS (VmHWM), anonymous RSS and the cgroup's ``memory.max_usage_in_bytes``. Without a
writable ``/sys/fs/cgroup/memory`` it prints why and exits with status 77 (skipped).

Checks: every child returned exactly the first unlimited child's ids, in every phase; the top
row is the query's source for at least 75% of the queries; eviction left under 5% of the
store's pages resident; no child was killed for memory.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lib import record

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
DEFAULT_PATH = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastquant-bench"
SOURCE_FILE = "benchmark-source.json"  # inside the store: which corpus it holds
DIM, SEED, K, MULTIPLIER, THREADS = 1024, 20261121, 10, 4, 2
MADV_DONTNEED = 4
_libc = ctypes.CDLL(None, use_errno=True)


# -- the child: one process searching the store ------------------------------------------------


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _drop_mapping(array: np.ndarray) -> None:
    """Unmap a memory-mapped ``array``'s pages from this process (they stay in the page cache)."""
    start = array.ctypes.data & ~(mmap.PAGESIZE - 1)
    length = array.ctypes.data + array.nbytes - start
    if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_DONTNEED) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_DONTNEED) failed")


def _resident(array: np.ndarray) -> float:
    """Fraction of a memory-mapped ``array``'s pages in the page cache (``mincore``)."""
    start = array.ctypes.data & ~(mmap.PAGESIZE - 1)
    length = array.ctypes.data + array.nbytes - start
    pages = (length + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vector = (ctypes.c_ubyte * pages)()
    if _libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vector) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return float((np.frombuffer(vector, np.uint8) & 1).mean())


def evict_files(files: list[Path]) -> None:
    """Drop ``files`` from the page cache (pages still mapped by some process stay)."""
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def chunk_files(path: Path, suffix: str) -> list[Path]:
    return sorted((path / "chunks").glob(f"*{suffix}"))


class _Searcher:
    """The open store, its mapped arrays and the queries: everything the child's phases share."""

    def __init__(self, path: Path, queries: np.ndarray) -> None:
        from fastquant import CorpusStore

        self.store = CorpusStore.open(path)
        self.queries = queries
        # The mapped chunks: to evict them, check their residency and rescore from them.
        self.snapshot = self.store.snapshot
        self.bits = list(self.snapshot.corpus.bits)
        self.codes = list(self.snapshot.corpus.codes)
        self.bit_files, self.code_files = chunk_files(path, ".bits"), chunk_files(path, ".codes")

    def search(self, i: int, prefetch: bool = True) -> np.ndarray:
        """Query ``i`` alone, end to end: ids ``(k,)``."""
        _, ids = self.store.search(
            self.queries[i], K, rescore_multiplier=MULTIPLIER, threads=THREADS, prefetch=prefetch
        )
        return ids[0]

    def rescore(self, i: int, candidates: np.ndarray, prefetch: bool) -> np.ndarray:
        """Only the int8 rescoring of query ``i``'s ``candidates (c,)``, as ``search`` does it."""
        from fastquant._engine import score_int8, top_by_score

        scores = score_int8(
            self.snapshot.corpus, self.queries[i : i + 1], candidates[None], prefetch=prefetch
        )
        return top_by_score(scores, candidates[None], K)[1][0]

    def evict(self, codes_only: bool) -> float:
        """Drop the codes (and unless ``codes_only`` the bits) from memory; returns what stayed."""
        arrays = self.codes if codes_only else self.codes + self.bits
        for array in arrays:
            _drop_mapping(array)
        evict_files(self.code_files if codes_only else self.code_files + self.bit_files)
        return max(_resident(array) for array in arrays)

    def read_bits(self) -> None:
        """Read the bits files in 16 MiB pieces: the disk's limit for a cold scan."""
        buffer = bytearray(1 << 24)
        for file in self.bit_files:
            with open(file, "rb", buffering=0) as f:
                while f.readinto(buffer):
                    pass


class _Samples:
    """Seconds and major page faults of timed calls, by phase and variant."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict[str, list]]] = {}

    def time(self, phase: str, name: str, call, *args, **kwargs):
        """Run ``call(*args, **kwargs)``, record its seconds and major faults, return its result."""
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
        start = time.perf_counter()
        result = call(*args, **kwargs)
        seconds = time.perf_counter() - start
        entry = self.data.setdefault(phase, {}).setdefault(
            name, {"seconds": [], "major_faults": []}
        )
        entry["seconds"].append(seconds)
        entry["major_faults"].append(resource.getrusage(resource.RUSAGE_SELF).ru_majflt - faults)
        return result


def run_child(args: argparse.Namespace) -> None:
    """Open the store, run the warm and cold phases, write ``<out>.json`` and ``<out>.ids.npy``."""
    import fastquant  # noqa: F401  (imported first, so the RSS below includes it)

    out = Path(args.out)
    queries = np.load(out.parent / "queries.npy")
    rss_after_import = _status_mib("VmRSS")
    start = time.perf_counter()
    s = _Searcher(Path(args.path), queries)
    open_seconds = time.perf_counter() - start
    n, n_cold = len(queries), min(args.cold_queries, len(queries))
    samples, resident, consistent = _Samples(), 0.0, True

    warm_ids = np.stack([s.search(i) for i in range(n)])  # warm-up pass: compiles, fills the cache
    for _ in range(args.warm_passes):
        for i in range(n):
            consistent &= bool(
                np.array_equal(samples.time("warm", "search", s.search, i), warm_ids[i])
            )
    # The candidates search() rescores: the Hamming top 40 (by distance, then id).
    candidates = np.stack(
        [s.store.search(q, K * MULTIPLIER, rescore="none", threads=THREADS)[1][0] for q in queries]
    )

    for i in range(n_cold):  # the variants alternate query by query, so drift hits them alike
        for prefetch in (True, False):
            name = "prefetch" if prefetch else "no-prefetch"
            for phase, codes_only, call, call_args in (
                ("cold", False, s.search, (i, prefetch)),
                ("cold-codes", True, s.search, (i, prefetch)),
                ("cold-rescore", True, s.rescore, (i, candidates[i], prefetch)),
            ):
                resident = max(resident, s.evict(codes_only))
                ids = samples.time(phase, name, call, *call_args)
                consistent &= bool(np.array_equal(ids, warm_ids[i]))
        s.evict(codes_only=False)
        samples.time("cold", "read-bits", s.read_bits)

    sources = np.load(out.parent / "sources.npy")
    result = {
        "samples": samples.data,
        "open_seconds": open_seconds,
        "rss_after_import_mib": rss_after_import,
        "resident_after_evict": resident,
        "ids_consistent": consistent,
        "recall_at_1": float(np.mean(warm_ids[:, 0] == sources)),
        # VmHWM is this process's own peak; ru_maxrss would include the parent's from before exec.
        "peak_rss_mib": _status_mib("VmHWM"),
        "rss_anon_end_mib": _status_mib("RssAnon"),
        "rss_file_end_mib": _status_mib("RssFile"),
    }
    np.save(out.with_suffix(".ids.npy"), warm_ids)
    out.with_suffix(".json").write_text(json.dumps(result))


# -- the parent: store, cgroups, comparison, report --------------------------------------------


def store_is_valid(path: Path, source: dict, verify: bool) -> bool:
    """Whether ``path`` is a complete store of exactly the corpus described by ``source``."""
    from fastquant import CorpusStore, StoreError

    marker = path / SOURCE_FILE
    if not marker.exists() or json.loads(marker.read_text()) != source:
        return False
    try:
        store = CorpusStore.open(path)
        if verify:
            store.verify()
    except (StoreError, OSError):
        return False
    return len(store) == source["rows"] and store.dim == source["dim"]


def ensure_store(path: Path, rows: int, verify: bool) -> dict:
    """Build the store at ``path`` unless it already holds this corpus; returns build facts."""
    from lib.synthetic import build_store

    source = {
        "generator": "synthetic.normalized_gaussian/v1",
        "seed": SEED,
        "rows": rows,
        "dim": DIM,
    }
    if store_is_valid(path, source, verify):
        return {"reused": True, "seconds": 0.0}
    if path.exists():
        if not (path / SOURCE_FILE).exists():
            sys.exit(f"{path} exists and is not a store built by this script: pass another --path")
        shutil.rmtree(path)  # ours, but another corpus or incomplete
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"building {rows:,} x {DIM} rows at {path} ...", flush=True)
    start = time.perf_counter()
    build_store(partial, rows, DIM, seed=SEED)
    seconds = time.perf_counter() - start
    (partial / SOURCE_FILE).write_text(json.dumps(source))
    os.rename(partial, path)
    return {"reused": False, "seconds": seconds, "rows_per_second": rows / seconds}


class MemoryCgroup:
    """A fresh cgroup-v1 memory cgroup under ``root``, removed on exit; ``limit`` bytes or none."""

    def __init__(self, root: Path, name: str, limit: int | None) -> None:
        self.path = root / name
        self.limit = limit

    def __enter__(self) -> MemoryCgroup:
        self.path.mkdir()
        if self.limit is not None:
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
        return self

    def __exit__(self, *exc_info) -> None:
        for _ in range(50):  # the last task may take a moment to leave
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)

    def launcher(self, command: list[str]) -> list[str]:
        """``command`` behind a shell that first moves itself into the cgroup, then ``exec``s it."""
        return [
            "/bin/sh",
            "-c",
            'echo $$ > "$0" && exec "$@"',
            str(self.path / "cgroup.procs"),
            *command,
        ]

    def stats(self) -> dict:
        def read(name: str) -> int:
            return int((self.path / name).read_text())

        stat = dict(line.split() for line in (self.path / "memory.stat").read_text().splitlines())
        oom = dict(
            line.split() for line in (self.path / "memory.oom_control").read_text().splitlines()
        )
        return {
            "limit_bytes": read("memory.limit_in_bytes") if self.limit is not None else None,
            "max_usage_bytes": read("memory.max_usage_in_bytes"),
            "failcnt": read("memory.failcnt"),
            "oom_kills": int(oom.get("oom_kill", 0)),
            "major_faults": int(stat.get("pgmajfault", 0)),
        }


def cgroup_problem(root: Path) -> str | None:
    """Why a memory cgroup cannot be made under ``root``, or None when it can."""
    probe = root / f"fastquant-probe-{os.getpid()}"
    try:
        probe.mkdir()
        try:
            (probe / "memory.limit_in_bytes").write_text(str(1 << 30))
        finally:
            probe.rmdir()
    except OSError as error:
        return (
            f"cannot create a memory cgroup under {root} ({error}): this benchmark needs a "
            "writable cgroup-v1 memory controller"
        )
    return None


def run_search_child(args: argparse.Namespace, name: str, limit: int | None, work: Path) -> dict:
    """Evict the store, run the search child in a fresh cgroup: its results and cgroup counters."""
    evict_files(chunk_files(args.path, ".bits") + chunk_files(args.path, ".codes"))
    out = work / f"{name}.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", "--path", str(args.path),
        "--out", str(out), "--warm-passes", str(args.warm_passes),
        "--cold-queries", str(args.cold_queries),
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with MemoryCgroup(args.cgroup_root, f"fastquant-{name}-{os.getpid()}", limit) as cgroup:
        done = subprocess.run(
            cgroup.launcher(command), env=env, capture_output=True, text=True, check=False
        )
        stats = cgroup.stats()
    if done.returncode != 0:
        raise RuntimeError(
            f"the {name} child failed (status {done.returncode}, cgroup {stats}):\n{done.stderr}"
        )
    result = json.loads(out.read_text())
    result.update(cgroup=stats, ids=np.load(out.with_suffix(".ids.npy")))
    return result


def _summary(seconds: list[float], faults: list[int]) -> dict:
    ms = 1e3 * np.asarray(seconds)
    return {
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "n": len(ms),
        "major_faults_per_query": float(np.mean(faults)),
    }


def merge_rounds(children: list[dict], limit: int | None) -> dict:
    """One run kind's children (one per round): pooled latencies, worst memory, every check."""
    phases = {}
    for phase, variants in children[0]["samples"].items():
        phases[phase] = {
            name: _summary(
                [s for c in children for s in c["samples"][phase][name]["seconds"]],
                [f for c in children for f in c["samples"][phase][name]["major_faults"]],
            )
            for name in variants
        }
    return {
        **phases,
        "limit_bytes": limit,
        "rounds": len(children),
        "round_medians_ms": {
            f"{phase}/{name}": [
                1e3 * float(np.median(c["samples"][phase][name]["seconds"])) for c in children
            ]
            for phase, variants in children[0]["samples"].items()
            for name in variants
        },
        "cgroup_peak_bytes": max(c["cgroup"]["max_usage_bytes"] for c in children),
        "cgroup_limit_hits": sum(c["cgroup"]["failcnt"] for c in children),
        "oom_kills": sum(c["cgroup"]["oom_kills"] for c in children),
        "peak_rss_mib": max(c["peak_rss_mib"] for c in children),
        "rss_anon_end_mib": max(c["rss_anon_end_mib"] for c in children),
        "rss_after_import_mib": max(c["rss_after_import_mib"] for c in children),
        "resident_after_evict": max(c["resident_after_evict"] for c in children),
        "recall_at_1": min(c["recall_at_1"] for c in children),
        "ids_consistent": all(c["ids_consistent"] for c in children),
    }


def check(ids_equal: bool, runs: dict) -> None:
    """Raise unless every child returned the same ids and the runs measured what they claim."""
    if not ids_equal:
        raise AssertionError("a child's ids differ from the first unlimited child's")
    for kind, run in runs.items():
        if not run["ids_consistent"] or run["recall_at_1"] < 0.75:
            raise AssertionError(f"{kind}: answers changed between phases or missed their sources")
        if run["resident_after_evict"] >= 0.05 or run["oom_kills"]:
            raise AssertionError(f"{kind}: eviction left pages in memory, or the child was killed")


def run_parent(args: argparse.Namespace, run: record.Run) -> None:
    problem = cgroup_problem(args.cgroup_root)
    if problem:
        print(f"SKIPPED: {problem}")
        sys.exit(record.SKIPPED)
    from lib.synthetic import noisy_queries

    args.path.parent.mkdir(parents=True, exist_ok=True)
    build = ensure_store(args.path, args.rows, args.verify)
    limit = args.limit_mib << 20
    kinds = {"unlimited": None, f"limit {args.limit_mib} MiB": limit}
    children: dict[str, list[dict]] = {kind: [] for kind in kinds}
    work = Path(tempfile.mkdtemp(prefix="fastquant-larger-than-ram-"))
    try:
        queries, sources = noisy_queries(SEED, args.rows, DIM, args.queries)
        np.save(work / "queries.npy", queries)
        np.save(work / "sources.npy", sources)
        for round_ in range(args.rounds):
            for kind, kind_limit in kinds.items():
                print(f"round {round_ + 1}/{args.rounds}: {kind} ...", flush=True)
                name = "unlimited" if kind_limit is None else "limited"
                children[kind].append(run_search_child(args, name, kind_limit, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reference = children["unlimited"][0]["ids"]
    ids_equal = all(np.array_equal(c["ids"], reference) for runs in children.values() for c in runs)
    runs = {kind: merge_rounds(children[kind], kinds[kind]) for kind in kinds}
    check(ids_equal, runs)
    bits_bytes = sum(f.stat().st_size for f in chunk_files(args.path, ".bits"))
    codes_bytes = sum(f.stat().st_size for f in chunk_files(args.path, ".codes"))
    run.save(
        threads=[THREADS],
        shapes={
            "rows": args.rows,
            "dim": DIM,
            "queries": args.queries,
            "cold queries": args.cold_queries,
            "warm passes": args.warm_passes,
            "k": K,
            "rescore multiplier": MULTIPLIER,
            "memory limit MiB": args.limit_mib,
        },
        rounds=args.rounds,
        store={
            "path": str(args.path),
            "bits_bytes": bits_bytes,
            "codes_bytes": codes_bytes,
            "bytes": bits_bytes + codes_bytes,
            "build": build,
        },
        ids_equal=ids_equal,
        store_larger_than_limit=bits_bytes + codes_bytes > limit,
        runs=runs,
    )


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--rows", type=int, help="store rows (2,000,000; 20,000 with --quick)")
    parser.add_argument("--path", type=Path, help=f"store directory (default under {DEFAULT_PATH})")
    parser.add_argument(
        "--limit-mib", type=int, default=512, help="memory limit of the limited child"
    )
    parser.add_argument("--queries", type=int, help="queries (default 50; 8 with --quick)")
    parser.add_argument("--cold-queries", type=int, help="queries of the cold phases (default all)")
    parser.add_argument(
        "--warm-passes", type=int, default=3, help="timed passes over the queries, warm"
    )
    parser.add_argument(
        "--rounds", type=int, help="unlimited/limited child pairs (default 2; 1 with --quick)"
    )
    parser.add_argument("--cgroup-root", type=Path, default=CGROUP_ROOT)
    parser.add_argument(
        "--verify", action="store_true", help="check every CRC-32 before reusing a store"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = args.rows or (20_000 if args.quick else 2_000_000)
    args.queries = args.queries or (8 if args.quick else 50)
    args.cold_queries = min(args.cold_queries or args.queries, args.queries)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.path = args.path or DEFAULT_PATH / f"larger-than-ram-{args.rows}x{DIM}.fq"
    if args.child:
        run_child(args)
    else:
        run_parent(args, record.Run("larger_than_ram", args, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
