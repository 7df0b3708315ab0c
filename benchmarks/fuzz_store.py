"""Corruption fuzzing of CorpusStore at scale: random damage to store files, the outcome table.

Runs ``--mutations`` random cases of ``tests/store_fuzz.py`` (each store file and kind of damage:
byte flips, cuts, extensions, deletions, directories, FIFOs, symlinks inside and outside the
store, hard links, strangers in ``chunks/``, valid JSON with wrong values with and without a
matching checksum), each probe in a child process with a timeout, prints the outcome tables
(by kind of damage, by file) and writes every case to ``benchmarks/results/fuzz_store.json``.
Bad outcomes (hang, signal, crash, wrong error, silent change, reader wrote, destroyed, append
broke) must all be zero; the exit status is 1 otherwise.

    python benchmarks/fuzz_store.py --mutations 500 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "fuzz_store.json"
sys.path.insert(0, str(HERE.parent / "tests"))  # the fuzzer lives with the tests that use it

import store_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mutations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=store_fuzz.TIMEOUT_S)
    parser.add_argument("--json", type=Path, default=RESULT)
    args = parser.parse_args()
    result = store_fuzz.main(
        [
            f"--mutations={args.mutations}",
            f"--seed={args.seed}",
            f"--workers={args.workers}",
            f"--timeout={args.timeout}",
        ]
    )
    result["command"] = " ".join(["python", "benchmarks/fuzz_store.py", *sys.argv[1:]])
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {args.json}")
    return 1 if result["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
