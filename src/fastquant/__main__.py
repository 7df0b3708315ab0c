"""The ``fastquant`` command (and ``python -m fastquant``), answering Ctrl-C from its first moment.

This module and the package's ``__init__`` import nothing heavy, so the console script reaches
:func:`main` at once; NumPy, Numba, pyarrow and the models load inside it, where an interrupt
(Ctrl-C in the first second of every command) ends with one line and exit status 130, as it does
during a command (``fastquant.cli``).
"""

import sys

#: Exit status after Ctrl-C (128 + SIGINT), as ``fastquant.cli.EXIT_INTERRUPTED``.
EXIT_INTERRUPTED = 130


def main() -> int:
    """Load the command line and run it on ``sys.argv``; returns the exit status."""
    try:
        from .cli import main as run_command
    except KeyboardInterrupt:
        print("fastquant: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return run_command()


if __name__ == "__main__":
    status = main()
    # An interrupt that escaped an ``exec`` of a string on its way to our handler (SciPy's imports
    # run one) leaves CPython's "unhandled KeyboardInterrupt" flag set, and ``python -m`` then
    # kills itself with SIGINT at exit; running any string resets that flag.
    exec("")
    sys.exit(status)
