"""The ``fastquant`` command (and ``python -m fastquant``), answering Ctrl-C from its first moment.

This module and the package's ``__init__`` import nothing heavy, so the console script reaches
:func:`main` at once: it installs the interrupt handling of :mod:`fastquant.interrupts`, then
loads NumPy, Numba, pyarrow and the command line, where an interrupt (Ctrl-C in the first second
of every command) ends with one line and exit status 130, as it does during a command.
"""

import sys

from . import interrupts


def main() -> int:
    """Load the command line and run it on ``sys.argv``; returns the exit status."""
    interrupts.install()
    try:
        from .cli import main as run_command
    except BaseException:
        if not interrupts.interrupted():
            raise
        print("fastquant: interrupted", file=sys.stderr)
        return interrupts.handled()
    if interrupts.interrupted():  # swallowed by an import's bare ``except:``
        print("fastquant: interrupted", file=sys.stderr)
        return interrupts.handled()
    return run_command()


if __name__ == "__main__":
    status = main()
    # An interrupt that escaped an ``exec`` of a string on its way to our handler (SciPy's imports
    # run one) leaves CPython's "unhandled KeyboardInterrupt" flag set, and ``python -m`` then
    # kills itself with SIGINT at exit; running any string resets that flag.
    exec("")
    sys.exit(status)
