"""Ctrl-C in the ``fastquant`` command: exit status 130 and one line, wherever it lands.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, and a few places turn
it into something else: a C extension's import into ``ImportError`` (NumPy), C++ code into
``MemoryError`` (usearch), and a ctypes callback (Numba compiling through llvmlite) into an
"Exception ignored" report that swallows it. :func:`install` (the command's entry point calls it
before anything heavy loads) records that Ctrl-C came, so that whatever exception follows ends
as an interrupt; it hands a swallowed interrupt back to the main thread a moment later, and
keeps the reports of exceptions Python cannot raise (destructors of half-built objects) off the
terminal once the command is being interrupted.
"""

from __future__ import annotations

import signal
import sys

#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: Seconds after a swallowed interrupt before it is raised again (out of the callback by then).
_REDELIVERY_S = 0.05

_interrupted = False
_handled = False


def install() -> None:
    """Handle SIGINT as Python does (``KeyboardInterrupt``), remembering that it came."""
    signal.signal(signal.SIGINT, _on_interrupt)
    sys.unraisablehook = _on_unraisable
    sys.excepthook = _on_uncaught  # also what C code printing an error (PyErr_Print) calls


def interrupted() -> bool:
    """Whether Ctrl-C came since :func:`install` (whatever exception it became)."""
    return _interrupted


def handled() -> int:
    """Say that the interrupt reached the command's handler; returns :data:`EXIT_INTERRUPTED`."""
    global _handled
    _handled = True
    return EXIT_INTERRUPTED


def _on_interrupt(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _on_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    if not _interrupted:
        sys.__unraisablehook__(unraisable)
    elif isinstance(unraisable.exc_value, KeyboardInterrupt):
        import threading

        timer = threading.Timer(_REDELIVERY_S, _redeliver)
        timer.daemon = True
        timer.start()


def _on_uncaught(kind: type[BaseException], error: BaseException, trace: object) -> None:
    if not (_interrupted and isinstance(error, KeyboardInterrupt)):
        sys.__excepthook__(kind, error, trace)


def _redeliver() -> None:
    import _thread

    if not _handled:
        _thread.interrupt_main(signal.SIGINT)
