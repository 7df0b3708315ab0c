"""Corruption fuzzing of CorpusStore at scale: random damage to store files, the outcome table.

Runs ``--mutations`` random cases of ``tests/store_fuzz.py`` (each store file and kind of damage:
byte flips, cuts, extensions, deletions, directories, FIFOs, symlinks inside and outside the
store, hard links, strangers in ``chunks/``, valid JSON with wrong values with and without a
matching checksum), each probe in a child process with a timeout, prints the outcome tables
(by kind of damage, by file) and writes every case to ``benchmarks/results/fuzz_store.json``.
Bad outcomes (hang, signal, crash, wrong error, silent change, reader wrote, destroyed, append
broke) must all be zero: otherwise it raises and writes nothing.

``--costs`` also measures what the checks cost on one chunk of 1M x 1024 (1.1 GiB on disk, about
a minute): a writer's open with nothing to cut, its open after a crash (proving the last chunk's
committed bytes by their CRC-32, then cutting), warm and with the chunk evicted from the page
cache, and a search's check of its mapped files, next to the search itself.

    python benchmarks/fuzz_store.py --mutations 600 --seed 1 --costs
    python benchmarks/fuzz_store.py --quick     # 12 cases
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lib import record

HERE = Path(__file__).resolve().parent
RECORD_FIELDS = ["target", "kind", "hot", "seed", "outcome", "append", "seconds", "description"]
sys.path.insert(0, str(HERE.parent / "tests"))  # the fuzzer lives with the tests that use it

import store_fuzz  # noqa: E402


def _median_ms(
    call: Callable[[], object], repeats: int, before: Callable[[], object] | None = None
) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def hardening_costs(rows: int = (1 << 20) - 1, dim: int = 1024) -> dict:
    """Milliseconds of the store's checks on one chunk of ``rows x dim`` (one row short of full)."""
    from fastquant import CorpusStore

    folder = Path(tempfile.mkdtemp(prefix="fastquant-costs-"))
    try:
        path = folder / "store"
        ranges = np.vstack([np.full(dim, -3, np.float32), np.full(dim, 3, np.float32)])
        store = CorpusStore.create(path, dim, ranges=ranges, chunk_rows=1 << 20)
        rng = np.random.default_rng(0)
        for lo in range(0, rows, 1 << 16):
            store.append(rng.standard_normal((min(1 << 16, rows - lo), dim), dtype=np.float32))
        store.close()
        files = [path / "chunks" / name for name in ("000000.bits", "000000.codes")]
        committed = [file.stat().st_size for file in files]

        def writer_open() -> None:
            with CorpusStore.open(path) as writer:
                writer.acquire_writer()

        def crash_leftovers() -> None:
            for file in files:
                with open(file, "ab") as handle:
                    handle.write(b"\x01" * 4096)

        def crash_leftovers_evicted() -> None:
            crash_leftovers()
            for file in files:
                fd = os.open(file, os.O_RDONLY)
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)

        reader = CorpusStore.open(path)
        query = rng.standard_normal((1, dim), dtype=np.float32)
        reader.search(query, 10)
        costs = {
            "shape": [rows, dim],
            "committed_bytes": sum(committed),
            "search_k10_ms": _median_ms(lambda: reader.search(query, 10), 9),
            "search_file_check_ms": _median_ms(lambda: reader.snapshot.require_intact(path), 99),
            "writer_open_nothing_to_cut_ms": _median_ms(writer_open, 5),
            "writer_open_after_crash_warm_ms": _median_ms(writer_open, 3, crash_leftovers),
            "writer_open_after_crash_cold_ms": _median_ms(writer_open, 2, crash_leftovers_evicted),
        }
        assert [file.stat().st_size for file in files] == committed  # the leftovers were cut
        return costs
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--mutations", type=int, help="random cases (500; 12 with --quick)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=store_fuzz.TIMEOUT_S)
    parser.add_argument("--costs", action="store_true", help="also time the checks (1.1 GiB)")
    args = parser.parse_args(argv)
    run = record.Run("fuzz_store", args, argv)
    mutations = args.mutations or (12 if args.quick else 500)
    result = store_fuzz.main(
        [
            f"--mutations={mutations}",
            f"--seed={args.seed}",
            f"--workers={args.workers}",
            f"--timeout={args.timeout}",
        ]
    )
    if result["bad"]:
        raise AssertionError(f"{len(result['bad'])} cases ended badly: {result['bad'][:3]}")
    if args.costs:
        result["costs"] = hardening_costs()
        print("\ncosts on one chunk of 1M x 1024 (ms, medians):")
        for name, value in result["costs"].items():
            print(f"  {name}: {value}")
    records = result.pop("records")
    run.save(
        threads=f"{args.workers} probes at a time, each in its own process",
        shapes={"mutations": mutations, "store": [store_fuzz.ROWS, store_fuzz.DIM]},
        **result,
        tables={by: store_fuzz.table(records, by) for by in ("kind", "target")},
        record_fields=RECORD_FIELDS,  # every case in one row
        records=[[entry[key] for key in RECORD_FIELDS] for entry in records],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
