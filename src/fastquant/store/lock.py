"""The writer lock: one appending process per store, the others told who holds it.

``writer.lock`` is locked with ``flock``, so the kernel releases it when the holder exits or is
killed: no stale locks. It holds the holder's pid for the error message. Readers take no lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StoreLockedError

LOCK_NAME = "writer.lock"


class WriterLock:
    """An exclusive, non-blocking lock on ``store/writer.lock``, held until ``release``."""

    def __init__(self, store_path: Path) -> None:
        self._fd: int | None = None
        file = store_path / LOCK_NAME
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"{store_path} is locked by another writer (pid {holder}); close that store or wait "
                "for it to finish. Readers need no lock."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        # A store dropped without close() must not keep the lock for the rest of the process.
        self.release()
