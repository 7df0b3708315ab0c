"""The ``fastquant`` command line."""

from __future__ import annotations

import os

# Before any OpenMP runtime loads: faiss's and Numba's spin-waiting threads otherwise steal each
# other's cores when both run in one process (see README, "Sharing cores with faiss").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from ._kernels.config import resolve_threads
from .backends import available_backends
from .hamming import compare_backends, hamming_topk


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up: JIT compilation, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench(args: argparse.Namespace) -> int:
    """Cross-check every installed backend on random bits, then time each one."""
    if args.bits <= 0 or args.bits % 8:
        raise ValueError(f"--bits must be a positive multiple of 8, got {args.bits}")
    rng = np.random.default_rng(0)
    nbytes = args.bits // 8
    corpus = rng.integers(0, 256, (args.rows, nbytes), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.batch, nbytes), dtype=np.uint8)
    threads = resolve_threads(args.threads)
    backends = available_backends()
    print(
        f"{args.rows:,} rows x {args.bits} bits, batch {args.batch}, k={args.k}, {threads} thread(s)"
    )
    report = compare_backends(corpus, queries, args.k, backends=backends, threads=threads)
    print(f"identical results: {', '.join(report.agree)}")
    for name, why in report.mismatches.items():
        print(f"MISMATCH {name}: {why}")
    rates = {}
    for name in backends:
        seconds = _median_seconds(
            lambda name=name: hamming_topk(corpus, queries, args.k, backend=name, threads=threads),
            args.repeats,
        )
        rates[name] = args.batch / seconds
    print(f"{'backend':<10}{'queries/s':>12}{'numba speed-up':>16}")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        print(f"{name:<10}{rate:>12,.0f}{rates['numba'] / rate:>15.2f}x")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastquant", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "bench", help="cross-check and time the Hamming backends on this machine"
    )
    p.add_argument("--rows", type=int, default=200_000, help="corpus rows (default 200,000)")
    p.add_argument(
        "--bits", type=int, default=1024, help="bits per row, a multiple of 8 (default 1024)"
    )
    p.add_argument("--batch", type=int, default=16, help="queries per search (default 16)")
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per backend (default 5)")
    p.set_defaults(run=bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, ImportError, OSError) as error:
        print(f"fastquant: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
