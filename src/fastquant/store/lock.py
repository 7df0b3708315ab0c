"""The writer lock: one appending process per store, the others told who holds it.

``writer.lock`` is locked with ``flock``, so the kernel releases it when the holder's descriptor
closes, which it does when the holder exits or is killed: no stale locks. A forked child would
inherit the descriptor and, with it, the lock for as long as it lives; so every descriptor of a
lock is closed in forked children right after ``fork`` (``os.register_at_fork``), and children
started with ``exec`` (subprocess, multiprocessing's spawn and forkserver) never get it
(``O_CLOEXEC``). The lock belongs to the process that took it, and only to it.

The file holds the holder's pid, for other writers' error messages, and nothing else: a
``writer.lock`` that is anything but a regular file of at most 32 bytes with one link is
:class:`StoreCorruptedError`, and is neither locked nor written.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from .errors import StoreCorruptedError, StoreLockedError, StoreWriteError
from .safe_files import open_regular

LOCK_NAME = "writer.lock"
#: A lock file holds a pid: anything longer is some other file.
MAX_LOCK_BYTES = 32

#: Descriptors of the locks this process took. Opening one and entering it here happen under
#: ``_fork_guard``, which ``fork`` also takes, so a child never inherits a lock it cannot see.
#: Reentrant: a lock dropped by the garbage collector inside a guarded block releases itself.
_lock_fds: set[int] = set()
_fork_guard = threading.RLock()


def _before_fork() -> None:
    _fork_guard.acquire()


def _after_fork_in_parent() -> None:
    _fork_guard.release()


def _after_fork_in_child() -> None:
    global _fork_guard
    for fd in _lock_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    _lock_fds.clear()
    _fork_guard = threading.RLock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


class WriterLock:
    """An exclusive, non-blocking lock on ``folder/writer.lock``, held until ``release``.

    Raises :class:`StoreLockedError` naming the holder when another writer holds it.
    """

    def __init__(self, folder: Path) -> None:
        self._fd: int | None = None
        self._pid = os.getpid()
        file = folder / LOCK_NAME
        with _fork_guard:
            fd = _open_lock_file(file)
            _lock_fds.add(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, MAX_LOCK_BYTES, 0).decode(errors="replace").strip()
            self._close(fd)
            raise StoreLockedError(
                f"{folder} is locked by {_describe_holder(holder, self._pid)}; close that store "
                "or wait for it to finish. Readers need no lock."
            ) from None
        except BaseException:
            self._close(fd)
            raise
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
        """Drop the lock. In a forked child there is nothing to drop: it never held it."""
        if self._fd is not None and os.getpid() == self._pid:
            self._close(self._fd)
        self._fd = None

    @staticmethod
    def _close(fd: int) -> None:
        with _fork_guard:
            _lock_fds.discard(fd)
            os.close(fd)  # the flock goes with the last descriptor of the open file

    def __del__(self) -> None:
        # A store dropped without close() must not keep the lock for the rest of the process.
        self.release()


def _open_lock_file(file: Path) -> int:
    """``writer.lock`` opened for locking, created if missing; refused unless it is a lock file."""
    try:
        fd = open_regular(file, os.O_RDWR | os.O_CREAT)
    except StoreCorruptedError:
        raise
    except OSError as error:
        raise StoreWriteError(f"cannot open the writer lock {file}: {error.strerror}") from error
    status = os.fstat(fd)
    if status.st_nlink != 1 or status.st_size > MAX_LOCK_BYTES:
        os.close(fd)
        raise StoreCorruptedError(
            f"{file} is not a lock file: it has {status.st_size:,} bytes and "
            f"{status.st_nlink} links, a lock file at most {MAX_LOCK_BYTES} bytes (a pid) and one "
            "link. If no fastquant writer is running, delete it"
        )
    return fd


def _describe_holder(holder: str, own_pid: int) -> str:
    if holder == str(own_pid):
        return f"another CorpusStore object of this process (pid {holder})"
    if not holder.isdigit():
        return "another writer (pid unknown)"
    try:
        os.kill(int(holder), 0)
    except ProcessLookupError:
        return (
            f"another process: the writer that recorded its pid, {holder}, is not running "
            "(here), so a process it started without exec holds the lock"
        )
    except OSError:  # alive but not ours to signal
        pass
    return f"another writer (pid {holder})"
