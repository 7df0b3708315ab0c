"""Chunk files: raw rows written with ``pwrite`` and read through read-only memory maps.

A chunk file is a bare C-order array of ``rows x width`` bytes (no header); its shape and dtype
are in the manifest. ``np.memmap(file, dtype, mode="r", shape=(rows, width))`` reads one.
"""

from __future__ import annotations

import mmap
import os
import stat
import zlib
from pathlib import Path

import numpy as np

from .errors import StoreCorruptedError

_READ_BYTES = 1 << 24


def map_rows(
    file: Path, rows: int, width: int, dtype: np.dtype, *, random_access: bool
) -> np.ndarray:
    """Read-only ``(rows, width)`` array of the first rows of a chunk file, memory-mapped.

    The array holds the map open for as long as it (or a view of it) lives. ``random_access``
    turns off the kernel's read-ahead, for files read a few scattered rows at a time.
    """
    needed = rows * width * np.dtype(dtype).itemsize
    fd = _open_checked(file, needed, rows)
    try:
        mapped = mmap.mmap(fd, needed, prot=mmap.PROT_READ)
    except OSError as error:
        raise OSError(error.errno, f"cannot memory-map {file}: {error.strerror}") from error
    finally:
        os.close(fd)
    if random_access:
        # Rescoring touches single rows: read-ahead around a fault would only evict useful pages.
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=dtype).reshape(rows, width)


def _open_checked(file: Path, needed: int, rows: int) -> int:
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        raise StoreCorruptedError(
            f"{file} is missing: the manifest lists {rows} rows in it"
        ) from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise StoreCorruptedError(f"{file} is not a regular file")
    size = status.st_size
    if size < needed:
        os.close(fd)
        raise StoreCorruptedError(
            f"{file} is truncated: {size} bytes, but its {rows} committed rows need {needed}"
        )
    return fd


def file_crc32(file: Path, nbytes: int) -> int:
    """CRC-32 of the first ``nbytes`` of ``file`` (read in 16 MiB pieces)."""
    crc = 0
    with open(file, "rb") as handle:
        remaining = nbytes
        while remaining:
            piece = handle.read(min(remaining, _READ_BYTES))
            if not piece:
                break
            crc = zlib.crc32(piece, crc)
            remaining -= len(piece)
    if remaining:
        raise StoreCorruptedError(
            f"{file} is truncated: {nbytes - remaining} bytes, {nbytes} committed"
        )
    return crc


def write_at(fd: int, offset: int, data: np.ndarray) -> None:
    """Write the bytes of C-contiguous ``data`` at ``offset``; short writes are continued."""
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
