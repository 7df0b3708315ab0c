"""Chunk files: raw rows written with ``pwrite`` and read through read-only memory maps.

A chunk file is a bare C-order array of ``rows x width`` bytes (no header); its shape and dtype
are in the manifest. ``np.memmap(file, dtype, mode="r", shape=(rows, width))`` reads one.
Files are opened through :mod:`.safe_files`: never through a symlink, never anything but a
regular file.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from .errors import StoreCorruptedError
from .safe_files import SAFE_OPEN_FLAGS, CommittedFile, open_regular


def map_rows(
    file: Path, rows: int, width: int, dtype: np.dtype, *, random_access: bool
) -> tuple[np.ndarray, CommittedFile]:
    """Read-only ``(rows, width)`` array of the first rows of a chunk file, memory-mapped.

    Returns it with the :class:`CommittedFile` a search re-checks before reading it. The array
    holds the map open for as long as it (or a view of it) lives. ``random_access`` turns off the
    kernel's read-ahead, for files read a few scattered rows at a time.
    """
    needed = rows * width * np.dtype(dtype).itemsize
    fd = open_committed(file, needed, rows)
    try:
        mapped = mmap.mmap(fd, needed, prot=mmap.PROT_READ)
        committed = CommittedFile.of(file, fd, needed)
    except OSError as error:
        raise OSError(error.errno, f"cannot memory-map {file}: {error.strerror}") from error
    finally:
        os.close(fd)
    if random_access:
        # Rescoring touches single rows: read-ahead around a fault would only evict useful pages.
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=dtype).reshape(rows, width), committed


def open_committed(file: Path, needed: int, rows: int, flags: int = os.O_RDONLY) -> int:
    """A descriptor of chunk file ``file``, which must hold the ``needed`` bytes of its ``rows`` rows."""
    try:
        fd = open_regular(file, flags)
    except FileNotFoundError:
        raise StoreCorruptedError(
            f"{file} is missing: the manifest lists {rows} rows in it"
        ) from None
    size = os.fstat(fd).st_size
    if size < needed:
        os.close(fd)
        raise StoreCorruptedError(
            f"{file} is truncated: {size} bytes, but its {rows} committed rows need {needed}"
        )
    return fd


def create_new(file: Path, during: str) -> int:
    """``file``, created for writing; it must not exist (``during``: "an append"), as the writer
    removed every unlisted file before it started."""
    try:
        return os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE_OPEN_FLAGS, 0o644)
    except FileExistsError:
        raise StoreCorruptedError(
            f"{file} appeared during {during}: no other process may write to the store"
        ) from None


def write_at(fd: int, offset: int, data: np.ndarray) -> None:
    """Write the bytes of C-contiguous ``data`` at ``offset``; short writes are continued."""
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
