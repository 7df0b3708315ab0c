"""The writer lock: one appending process per store, the others told who holds it.

``writer.lock`` is locked with ``flock``, so the kernel releases it when the holder exits or is
killed: no stale locks. It holds the holder's pid for the error message. Readers take no lock.
A forked child inherits the descriptor, and with it the flock, but not the right to write:
``held`` is true only in the process that took the lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StoreLockedError, StoreWriteError

LOCK_NAME = "writer.lock"


class WriterLock:
    """An exclusive, non-blocking lock on ``store/writer.lock``, held until ``release``."""

    def __init__(self, store_path: Path) -> None:
        self._fd: int | None = None
        self._pid = os.getpid()
        file = store_path / LOCK_NAME
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreWriteError(
                f"cannot open the writer lock {file}: {error.strerror}"
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = (
                f"another CorpusStore object of this process (pid {holder})"
                if holder == str(self._pid)
                else f"another writer (pid {holder or 'unknown'})"
            )
            raise StoreLockedError(
                f"{store_path} is locked by {who}; close that store or wait for it to finish. "
                "Readers need no lock."
            ) from None
        try:  # the pid only informs other writers' error messages: a full disk must not matter
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(self._pid).encode(), 0)
        except OSError:
            pass
        self._fd = fd

    @property
    def held(self) -> bool:
        """True in the process that took the lock, until ``release``; false in forked children."""
        return self._fd is not None and os.getpid() == self._pid

    def release(self) -> None:
        """Drop the lock. In a forked child only the inherited descriptor is closed."""
        if self._fd is not None:
            os.close(self._fd)  # the flock goes when the holder's last descriptor closes
            self._fd = None

    def __del__(self) -> None:
        # A store dropped without close() must not keep the lock for the rest of the process.
        self.release()
