"""What every benchmark script shares: its two options and the one JSON file it writes.

A benchmark ``benchmarks/<name>.py`` measures, checks its own answers (an ``AssertionError``
when they are wrong: a run with wrong answers writes nothing) and writes
``benchmarks/results/<name>.json`` through ``Run.save``, nothing else (how to add one:
``benchmarks/README.md``).

Every result holds these keys, then the benchmark's own: ``benchmark`` (its name), ``command``
(the exact command line), ``quick``, ``commit`` (``git describe --always --dirty``),
``machine``, ``load_average`` (1-minute load before and after: other work on this shared
machine), ``seconds`` (wall time), ``threads`` (thread counts, or a sentence) and ``shapes``
(name -> number or list, e.g. ``{"rows": 1000000, "batches": [1, 16]}``).

Full runs write to ``benchmarks/results/``; ``--quick`` runs (tiny shapes: smoke tests, not
measurements) to ``benchmarks/.cache/quick/`` unless ``--results-dir`` is given.

A script that times faiss beside Numba sets ``OMP_WAIT_POLICY=PASSIVE`` before importing them:
faiss ships its own OpenMP runtime and Numba uses another; both spin-wait after each parallel
region by default and steal each other's cores (numba's 2-thread scan ran at half speed right
after a faiss call), so idle threads must sleep for engines to be timed fairly side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
QUICK_RESULTS_DIR = BENCHMARKS_DIR / ".cache" / "quick"
#: Exit status of a benchmark that cannot run here (a package or a system feature is missing).
SKIPPED = 77
#: Packages whose versions every result records, when installed.
PACKAGES = (
    "fastquant", "numpy", "numba", "faiss-cpu", "usearch", "sentence-transformers", "torch",
    "wordllama", "distributed",
)  # fmt: skip


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by the script's docstring, with ``--quick`` and ``--results-dir``."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test")
    parser.add_argument(
        "--results-dir",
        type=Path,
        help=f"where <name>.json goes (default {RESULTS_DIR}; {QUICK_RESULTS_DIR} with --quick)",
    )
    return parser


def require(*modules: str) -> None:
    """Exit with status ``SKIPPED``, saying why, unless every module can be imported."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        print(f"SKIPPED: needs {', '.join(missing)}")
        sys.exit(SKIPPED)


def machine() -> dict[str, object]:
    """The CPU, cores, RAM, kernel, Python and package versions of this machine."""
    facts: dict[str, str] = {}
    for file in ("/proc/cpuinfo", "/proc/meminfo"):
        try:
            with open(file) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    facts.setdefault(key.strip(), value.strip())
        except OSError:
            pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    ram_kib = facts.get("MemTotal", "").split()[:1]
    return {
        "cpu": facts.get("model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gib": round(int(ram_kib[0]) / 2**20, 1) if ram_kib else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=BENCHMARKS_DIR, capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


class Run:
    """One run of the benchmark ``name``: made before measuring, ``save``\\ d after."""

    def __init__(self, name: str, args: argparse.Namespace, argv: list[str] | None) -> None:
        self.name = name
        self.quick = bool(args.quick)
        self.results_dir = args.results_dir or (QUICK_RESULTS_DIR if self.quick else RESULTS_DIR)
        words = sys.argv[1:] if argv is None else argv
        self.command = shlex.join(["python", f"benchmarks/{name}.py", *map(str, words)])
        self.load_before = os.getloadavg()[0]
        self.started = time.perf_counter()

    def save(self, *, threads: list[int] | str, shapes: dict, **fields: object) -> Path:
        """Write ``<results dir>/<name>.json``: the common keys, then ``fields``; its path."""
        result = {
            "benchmark": self.name,
            "command": self.command,
            "quick": self.quick,
            "commit": _commit(),
            "machine": machine(),
            "load_average": [self.load_before, os.getloadavg()[0]],
            "seconds": time.perf_counter() - self.started,
            "threads": threads,
            "shapes": shapes,
            **fields,
        }
        self.results_dir.mkdir(parents=True, exist_ok=True)
        path = self.results_dir / f"{self.name}.json"
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(temp, path)
        print(f"wrote {path}")
        return path
