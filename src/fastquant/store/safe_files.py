"""Store files opened as what they must be, and cut only after proving what is cut was never committed.

Every file of a store (and, through these functions, of a text index beside it) is opened without
following a symbolic link and without blocking (``O_NOFOLLOW | O_NONBLOCK``, so a FIFO returns at
once), then checked with ``fstat`` to be a regular file before a byte is read, mapped or written.
Anything else (a symlink, a directory, a FIFO, a device, a file too large for what it holds) is
:class:`StoreCorruptedError` naming the file, raised with nothing read or changed. A missing
file raises ``FileNotFoundError`` so that callers can say what it should have held.

Cutting bytes (``cut_leftovers``) or deleting a file (``remove_leftover``) is allowed only for what
an interrupted write left: the caller proves the record of what is committed (a checksummed
manifest) and these functions prove that the file's committed bytes are intact first.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreCorruptedError

#: Flags of every open: never follow a symlink, never block on a FIFO, never leak into exec'd children.
SAFE_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_READ_BYTES = 1 << 24

#: errno of a refused ``open`` -> what the path is instead of a regular file.
_REFUSALS = {
    errno.ELOOP: "a symbolic link; fastquant follows no links inside a store",
    errno.EMLINK: "a symbolic link; fastquant follows no links inside a store",
    errno.EISDIR: "a directory, not a file",
    errno.ENXIO: "a FIFO or socket, not a file",
    errno.ENOTDIR: "not reachable: a folder on its path is not a directory",
}


def describe_kind(mode: int) -> str:
    """What an ``st_mode`` is, for error messages: ``"a directory"``, ``"a FIFO"``, ..."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(file: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A descriptor of ``file``, which must be a regular file reached without following a symlink.

    ``flags`` are ``os.open`` flags (``O_RDONLY``, ``O_RDWR | O_CREAT``, ...); the safe flags are
    added. ``FileNotFoundError`` propagates; every other kind of path raises
    :class:`StoreCorruptedError` naming ``file``. Close the descriptor with ``os.close``.
    """
    try:
        fd = os.open(file, flags | SAFE_OPEN_FLAGS, mode)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno not in _REFUSALS:
            raise
        raise StoreCorruptedError(f"{file} is {_REFUSALS[error.errno]}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise StoreCorruptedError(f"{file} is {describe_kind(status.st_mode)}, not a file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def require_single_link(fd: int, file: Path) -> None:
    """Refuse to write ``file`` (open as ``fd``) when other names share its bytes (hard links)."""
    links = os.fstat(fd).st_nlink
    if links != 1:
        raise StoreCorruptedError(
            f"{file} has {links} hard links: writing it would change the other files too, so "
            "fastquant does not; copy it (cp, not cp -l) to give the store its own"
        )


def read_regular(file: Path, max_bytes: int) -> bytes:
    """All bytes of the regular file ``file``, which may hold at most ``max_bytes``.

    A larger file is :class:`StoreCorruptedError` before anything is read into memory.
    """
    fd = open_regular(file)
    try:
        size = os.fstat(fd).st_size
        pieces, total = [], 0
        while size <= max_bytes and total <= max_bytes:
            piece = os.read(fd, min(_READ_BYTES, max_bytes + 1 - total))
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
    finally:
        os.close(fd)
    if size > max_bytes or total > max_bytes:
        raise StoreCorruptedError(
            f"{file} holds {max(size, total):,} bytes; a file of its kind holds at most "
            f"{max_bytes:,}"
        )
    return b"".join(pieces)


def require_directory(path: Path) -> None:
    """``path`` must be a real directory, not a symlink to one; ``FileNotFoundError`` propagates."""
    mode = os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        raise StoreCorruptedError(f"{path} is {describe_kind(mode)}, not a directory")


def prefix_crc32(fd: int, nbytes: int, file: Path) -> int:
    """CRC-32 of the first ``nbytes`` of the open ``file`` (read in 16 MiB pieces with ``pread``)."""
    crc, offset = 0, 0
    while offset < nbytes:
        piece = os.pread(fd, min(_READ_BYTES, nbytes - offset), offset)
        if not piece:
            raise StoreCorruptedError(
                f"{file} is truncated: {offset:,} bytes, but {nbytes:,} are committed"
            )
        crc = zlib.crc32(piece, crc)
        offset += len(piece)
    return crc


def require_crc32(fd: int, nbytes: int, expected: int, file: Path) -> None:
    """Raise :class:`StoreCorruptedError` unless the first ``nbytes`` of ``file`` have CRC ``expected``."""
    if prefix_crc32(fd, nbytes, file) != expected:
        raise StoreCorruptedError(f"{file} fails its checksum: its committed bytes were changed")


def cut_leftovers(fd: int, file: Path, committed: int) -> int:
    """Truncate ``file`` (open for writing as ``fd``) to its ``committed`` bytes; returns bytes cut.

    Call only after proving the committed state (a checksummed manifest) and the file's committed
    bytes (:func:`require_crc32`): the bytes past them are then leftovers of an interrupted write.
    """
    require_single_link(fd, file)
    size = os.fstat(fd).st_size
    if size < committed:
        raise StoreCorruptedError(
            f"{file} is truncated: {size:,} bytes, but {committed:,} are committed"
        )
    if size > committed:
        os.ftruncate(fd, committed)
    return size - committed


def remove_leftover(file: Path) -> None:
    """Delete ``file``, a regular file that no committed state lists (the caller proved that).

    Anything but a regular file with one link is :class:`StoreCorruptedError` and stays.
    """
    status = os.lstat(file)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        kind = describe_kind(status.st_mode)
        raise StoreCorruptedError(
            f"{file} is {kind if status.st_nlink == 1 else 'hard-linked'}: fastquant deletes only "
            "files it left itself; move it away"
        )
    file.unlink()


def write_file_atomically(file: Path, data: bytes) -> None:
    """Replace ``file`` by ``data`` atomically and durably: temp file, fsync, rename, fsync of the folder.

    The temp file ``.NAME.tmp-PID`` beside ``file`` is created new (never through a symlink). A
    failure (disk full) removes it and raises ``OSError`` naming ``file``; ``file`` is then the old
    one, or the new one if only the final fsync of the folder failed.
    """
    temp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    replaced = False
    try:
        fd = _create_new(temp)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, file)
        replaced = True
        fsync_directory(file.parent)
    except OSError as error:
        if not replaced:
            with suppress(OSError):
                temp.unlink()
        raise OSError(error.errno, f"{error.strerror} (writing {file})") from error


def _create_new(file: Path) -> int:
    """A new file opened for writing; a stale one of the same name (a dead process's) is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE_OPEN_FLAGS
    try:
        return os.open(file, flags, 0o644)
    except FileExistsError:
        file.unlink()  # our pid in its name: left by an earlier process that had this pid
        return os.open(file, flags, 0o644)


def fsync_directory(path: Path) -> None:
    """Make renames and new files in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CommittedFile:
    """A file of which a reader relies on the first ``size`` bytes, as it was opened.

    ``device`` and ``inode`` identify the file opened, so that a file replaced, deleted or cut
    short since then is noticed with one ``lstat`` (:meth:`require_unchanged`).
    """

    path: Path
    device: int
    inode: int
    size: int

    @classmethod
    def of(cls, path: Path, fd: int, size: int) -> CommittedFile:
        status = os.fstat(fd)
        return cls(path, status.st_dev, status.st_ino, size)

    def same_file(self, other: CommittedFile) -> bool:
        """True when ``other`` was opened from the same file (device and inode)."""
        return (self.device, self.inode) == (other.device, other.inode)

    def problem(self) -> str | None:
        """What changed about the file since it was opened, or None."""
        try:
            status = os.lstat(self.path)
        except OSError as error:
            return f"can no longer be found ({error.strerror})"
        if (status.st_dev, status.st_ino) != (self.device, self.inode):
            return "was replaced by another file"
        if status.st_size < self.size:
            return f"was cut to {status.st_size:,} bytes; its committed rows need {self.size:,}"
        return None

    def require_unchanged(self) -> None:
        """Raise :class:`StoreCorruptedError` if the file was replaced or cut short since it was opened."""
        problem = self.problem()
        if problem is not None:
            raise StoreCorruptedError(
                f"{self.path} {problem} while the store was open; fastquant never does that: "
                "check the store (verify) and reopen it"
            )
