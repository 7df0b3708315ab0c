"""The list of deleted ids: ``chunks/deleted-GGGGGG.ids``, a sorted ``(n,) int64`` array.

A delete writes the whole new list under the next generation's name, flushes it, and commits by
replacing the manifest (which records the list's generation, length and CRC-32); the previous
list is removed after the commit, or by the next writer if that did not happen. Compaction drops
the rows and empties the list.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from .errors import StoreCorruptedError
from .files import create_new, write_at
from .manifest import ID_BYTES, DeletedRecord, Manifest, deleted_file
from .safe_files import read_regular


def read_deleted(path: Path, manifest: Manifest) -> np.ndarray:
    """The ids ``manifest`` lists as deleted, ``(n,) int64`` ascending (empty when none)."""
    record = manifest.deleted
    if record is None:
        return np.empty(0, dtype=np.int64)
    file = path / deleted_file(record.generation)
    try:
        data = read_regular(file, record.rows * ID_BYTES)
    except FileNotFoundError:
        raise StoreCorruptedError(
            f"{file} is missing: the manifest lists {record.rows} deleted rows in it"
        ) from None
    if len(data) != record.rows * ID_BYTES or zlib.crc32(data) != record.crc32:
        raise StoreCorruptedError(
            f"{file} fails its checksum: the list of {record.rows} deleted ids was changed"
        )
    ids = np.frombuffer(data, dtype="<i8").astype(np.int64)
    if ids.size and (ids[0] < 0 or ids[-1] >= manifest.next_id or np.any(np.diff(ids) <= 0)):
        raise StoreCorruptedError(
            f"{file} is not an ascending list of ids below {manifest.next_id}"
        )
    return ids


def write_deleted(path: Path, generation: int, ids: np.ndarray) -> DeletedRecord:
    """Write ``ids (n,) int64`` (ascending, ``n >= 1``) as generation ``generation`` of the list,
    flushed; returns its record for the manifest."""
    data = np.ascontiguousarray(ids, dtype="<i8")
    file = path / deleted_file(generation)
    fd = create_new(file, "a delete")
    try:
        write_at(fd, 0, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return DeletedRecord(generation, int(data.size), zlib.crc32(data.view(np.uint8)))
