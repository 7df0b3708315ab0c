"""Ctrl-C in the first second of a ``fastquant`` command: SIGINT at random early times, outcomes.

Starts ``fastquant index`` (WordLlama, a generated CSV) the way the installed console script does (``from fastquant.__main__ import
main``), or as ``python -m fastquant``, sends SIGINT after a random delay and sorts what happened:

- ``130``: exit status 130, stderr one ``fastquant: interrupted`` line (what must happen);
- ``traceback``: a Python traceback on stderr;
- ``killed``: the process died of the signal (it arrived before Python could raise
  ``KeyboardInterrupt``: the interpreter's own start-up, which no Python code can guard);
- ``finished``: the command ended before the signal came;
- ``other``: anything else (printed in full).

Used by ``tests/test_cli.py`` (a few tries) and run directly for the measurement:
``python tests/early_interrupts.py --tries 60 --seed 1``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

#: Rows of the input indexed: about a second of imports, then seconds of work.
INPUT_ROWS = 40_000
#: How each way of starting fastquant is spelled.
ENTRIES = {
    "console script": ["-c", "import sys; from fastquant.__main__ import main; sys.exit(main())"],
    "python -m": ["-m", "fastquant"],
}


def write_input(folder: Path) -> Path:
    """A CSV of :data:`INPUT_ROWS` short texts in ``folder``."""
    file = folder / "input.csv"
    file.write_text("text\n" + "".join(f"text number {i}\n" for i in range(INPUT_ROWS)))
    return file


def interrupt(
    entry: str,
    delay: float,
    input_file: Path,
    store: Path,
    src: Path | None = None,
    after: str | None = None,
) -> tuple[str, str]:
    """Start ``fastquant index`` (WordLlama) of ``input_file`` into ``store`` as ``entry``, send
    SIGINT after ``delay`` s (counted from when a library whose path holds ``after`` is mapped
    into the process, if given: past the interpreter's start-up); returns ``(outcome, stderr)``."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = ["index", str(input_file), "--store", str(store), "--text-column", "text"]
    child = subprocess.Popen(
        [sys.executable, *ENTRIES[entry], *command, "--model", "wordllama", "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if after is not None:
        _wait_for_library(child, after)
    time.sleep(delay)
    finished = child.poll() is not None
    if not finished:
        child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    return judge(child.returncode, stderr, finished), stderr


def _wait_for_library(child: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    """Return once ``child`` has a file whose path holds ``name`` mapped (Linux ``/proc``)."""
    deadline = time.monotonic() + timeout
    maps = Path(f"/proc/{child.pid}/maps")
    while time.monotonic() < deadline and child.poll() is None:
        if name in maps.read_text():
            return
        time.sleep(0.002)
    raise TimeoutError(f"{name} was not loaded within {timeout} s")


def judge(returncode: int, stderr: str, finished: bool) -> str:
    if finished:
        return "finished"
    if "Traceback" in stderr:
        return "traceback"
    if returncode == -signal.SIGINT:
        return "killed"
    if returncode == 130 and stderr.strip().splitlines()[-1].startswith("fastquant: interrupted"):
        return "130"
    return "other"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tries", type=int, default=60, help="per way of starting fastquant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--longest", type=float, default=1.5, help="longest delay, seconds")
    parser.add_argument("--src", type=Path, default=Path(__file__).parents[1] / "src")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    results: dict[str, Counter] = {}
    with tempfile.TemporaryDirectory(prefix="fastquant-interrupts-") as scratch:
        input_file = write_input(Path(scratch))
        for entry in ENTRIES:
            counts = results.setdefault(entry, Counter())
            for attempt in range(args.tries):
                delay = rng.uniform(0.0, args.longest)
                store = Path(scratch) / f"{entry}-{attempt}".replace(" ", "-")
                outcome, stderr = interrupt(entry, delay, input_file, store, args.src)
                counts[outcome] += 1
                if outcome in ("traceback", "killed", "other"):
                    print(f"{entry}, SIGINT at {delay * 1000:.0f} ms: {outcome}\n{stderr[-800:]}")
    outcomes = ["130", "traceback", "killed", "finished", "other"]
    print(f"{'started as':<16}{'tries':>6}" + "".join(f"{name:>11}" for name in outcomes))
    for entry, counts in results.items():
        cells = "".join(f"{counts[name]:>11}" for name in outcomes)
        print(f"{entry:<16}{sum(counts.values()):>6}{cells}")
    return {entry: dict(counts) for entry, counts in results.items()}


if __name__ == "__main__":
    main()
