"""fastquant: quantized embedding search from the command line.

Commands: index, search, delete, compact, info, verify, demo, serve, bench (`fastquant COMMAND --help`).
"""

from __future__ import annotations

import os

# Before any OpenMP runtime loads: faiss's and Numba's spin-waiting threads otherwise steal each
# other's cores when both run in one process (see README, "Sharing cores with faiss").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from collections.abc import Sequence

from . import commands, interrupts
from ._engine import DEFAULT_BACKEND, DEFAULT_K, DEFAULT_RESCORE_MULTIPLIER, DEFAULT_SCAN, SCANS
from .backends import BACKEND_NAMES
from .demo import DEMO_K
from .embed import DEFAULT_BATCH_ROWS, DEFAULT_CALIBRATION_ROWS
from .encoders import BUILT_IN, DEFAULT_MODEL
from .store import StoreError
from .validation import as_int, positive_int
from .web import DEFAULT_HOST, DEFAULT_PORT

#: What ``--model`` takes, from the encoders' own registry.
MODEL_HELP = (
    f"{DEFAULT_MODEL} (default: int8 where the CPU has int8 dot products, else fp32), "
    f"{', '.join(BUILT_IN)}, or a sentence-transformers folder"
)

#: Exit status of a command that failed with a reported error.
EXIT_ERROR = 1
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = interrupts.EXIT_INTERRUPTED


def tcp_port(name: str, value: object) -> int:
    """``value`` as a TCP port, 1 to 65535 (TypeError for non-integers, ValueError outside)."""
    port = as_int(name, value)
    if not 0 < port < 1 << 16:
        raise ValueError(f"{name} must be a TCP port from 1 to 65535, got {port}")
    return port


#: Each integer option (by its ``dest``) and the rule of :mod:`fastquant.validation` it obeys;
#: checked after parsing, so a bad value is a one-line error naming the option, exit status 1.
INTEGER_OPTIONS = {
    "k": positive_int,
    "rescore_multiplier": positive_int,
    "threads": positive_int,
    "batch_size": positive_int,
    "calibration_rows": positive_int,
    "port": tcp_port,
    "rows": positive_int,
    "bits": positive_int,
    "batch": positive_int,
    "repeats": positive_int,
}


def check_integer_options(args: argparse.Namespace) -> None:
    """Apply :data:`INTEGER_OPTIONS` to the options given (None: left to its default)."""
    for dest, check in INTEGER_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is not None:
            check("-k" if dest == "k" else f"--{dest.replace('_', '-')}", value)


def _add_search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-k", type=int, default=DEFAULT_K, help="answers per query (default %(default)s)"
    )
    p.add_argument(
        "--scan",
        default=DEFAULT_SCAN,
        choices=SCANS,
        help="how candidates are found: the bits against a ternary query, narrowed by the "
        "query quantized to 4 bits (asymmetric); every row against the 4-bit query "
        "(asymmetric-exact); against the query's bits (hamming); or a Hamming list narrowed "
        "by the 4-bit score (default %(default)s)",
    )
    p.add_argument(
        "--rescore-multiplier",
        type=int,
        default=DEFAULT_RESCORE_MULTIPLIER,
        help="candidates per answer rescored with int8 (default %(default)s)",
    )
    p.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        choices=BACKEND_NAMES,
        help="scan engine; the asymmetric scan runs on numba or numpy (default %(default)s)",
    )
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastquant", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "index", help="embed a parquet, CSV or JSONL file, or index its precomputed embeddings"
    )
    p.add_argument(
        "input",
        nargs="?",
        help="parquet, CSV or JSONL file of records (optional with --embeddings)",
    )
    p.add_argument("--store", required=True, help="store directory (created, or resumed)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--text-column", help="the column to embed")
    what.add_argument(
        "--template", help='text to embed, from columns: "Name: {Medicine Name}. Uses: {Uses}"'
    )
    what.add_argument(
        "--embedding-column",
        metavar="COLUMN",
        help="index the precomputed embeddings in this parquet column (lists of floats)",
    )
    what.add_argument(
        "--embeddings",
        metavar="FILE.npy",
        help="index the precomputed embeddings of a (rows, dim) .npy file; row i is the "
        "embedding of INPUT's row i (without INPUT, the records are the row numbers)",
    )
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument(
        "--key-column",
        metavar="COLUMN",
        help="the column that identifies a row: re-running on a changed input then appends new "
        "rows, re-embeds changed ones (deleting the old) and leaves the rest (remembered)",
    )
    p.add_argument(
        "--delete-missing",
        action="store_true",
        help="with a key column: delete the rows whose key the input no longer has",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_ROWS,
        help="rows per batch (default %(default)s)",
    )
    p.add_argument(
        "--calibration-rows",
        type=int,
        default=DEFAULT_CALIBRATION_ROWS,
        help="first rows that set the int8 ranges (default %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=commands.index)

    p = sub.add_parser("search", help="search a store built by 'fastquant index'")
    p.add_argument("store", help="store directory")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="query text(s)")
    p.add_argument(
        "--model",
        default=None,
        help=f"model for the query texts: {MODEL_HELP}. Default: the store's (a store of "
        "precomputed embeddings needs one of its dimension)",
    )
    p.add_argument(
        "--query-vector",
        metavar="FILE.npy",
        help="search with the vectors of a .npy file, (dim,) or (queries, dim), instead of text",
    )
    _add_search_options(p)
    p.add_argument(
        "--where",
        metavar="SQL",
        help="only records for which this SQL condition over their columns holds, e.g. "
        "\"Composition\" ILIKE '%%amoxycillin%%' (evaluated by DuckDB)",
    )
    p.add_argument("--fields", help="comma-separated record fields to show (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(run=commands.search)

    p = sub.add_parser("delete", help="delete rows by id or by an SQL condition on their records")
    p.add_argument("store", help="store directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ids", metavar="3,5,9", help="comma-separated row ids")
    which.add_argument(
        "--where",
        metavar="SQL",
        help="the rows whose records satisfy this SQL condition (a store built by fastquant index)",
    )
    p.set_defaults(run=commands.delete)

    p = sub.add_parser("compact", help="rewrite the chunks without deleted rows, returning space")
    p.add_argument("store", help="store directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=commands.compact)

    p = sub.add_parser("info", help="rows, dimension, chunks and bytes per representation")
    p.add_argument("store", help="store directory")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(run=commands.info)

    p = sub.add_parser("verify", help="check every stored byte against its checksum")
    p.add_argument("store", help="store directory")
    p.set_defaults(run=commands.verify)

    p = sub.add_parser("demo", help="search the bundled medicine data set (indexed on first run)")
    p.add_argument(
        "--query", action="append", help="query text (repeatable; default: three examples)"
    )
    p.add_argument("-k", type=int, default=DEMO_K, help="answers per query (default %(default)s)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=commands.demo)

    p = sub.add_parser("serve", help="the search web page (needs the 'web' extra)")
    p.add_argument("store", nargs="?", default=None, help="store directory (default: the demo)")
    p.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument(
        "--model",
        default=None,
        help="model for queries (default: the one the store was built with)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (demo build)")
    p.set_defaults(run=commands.serve)

    p = sub.add_parser("bench", help="cross-check and time the Hamming backends on this machine")
    p.add_argument("--rows", type=int, default=200_000, help="corpus rows (default 200,000)")
    p.add_argument(
        "--bits", type=int, default=1024, help="bits per row, a multiple of 8 (default 1024)"
    )
    p.add_argument("--batch", type=int, default=16, help="queries per search (default 16)")
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per backend (default 5)")
    p.set_defaults(run=commands.bench)
    return parser


#: Exceptions reported as one line (anything else is a bug, shown with its traceback).
REPORTED_ERRORS = (
    StoreError,
    ValueError,
    TypeError,
    LookupError,
    ImportError,
    OSError,
    RuntimeError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are one line on stderr and a non-zero exit, never a traceback."""
    command = None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        check_integer_options(args)
        status = args.run(args)
        # Ctrl-C that something swallowed on its way (a library's bare ``except:``) still counts.
        return _interrupted(command) if interrupts.interrupted() else status
    except BrokenPipeError:  # the reader of our output left (`fastquant info DIR | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        return _interrupted(command)
    except Exception as error:
        if interrupts.interrupted():  # Ctrl-C that became another exception on its way here
            return _interrupted(command)
        if not isinstance(error, REPORTED_ERRORS):
            raise
        print(f"fastquant: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def _interrupted(command: str | None) -> int:
    resume = " (run the same command again to resume)" if command in ("index", "demo") else ""
    print(f"fastquant: interrupted{resume}", file=sys.stderr)
    return interrupts.handled()


if __name__ == "__main__":
    sys.exit(main())
