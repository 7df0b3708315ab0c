"""The source records of a store's rows: a folder of Arrow IPC files aligned with the store's ids.

Each commit of ``fastquant index`` writes one file ``records/<first id>-<rows>-<crc32>.arrow``
(the CRC-32 of the file's bytes) just before the store's append of the same rows: written to
``.NAME.tmp-PID``, flushed and renamed, so it is whole or absent. Record ``i`` is row id ``i`` of
the store; records of deleted rows stay (ids are never reused), so the records number the store's
``next_id``, not its live rows. Files are opened as the store's are (:mod:`fastquant.store.safe_files`: no symlink
followed, no FIFO waited on, regular files only) and memory-mapped to look records up by id.

One file per commit means the store's ``next_id`` (rows ever committed) always falls on a file boundary, and an
interrupted run leaves at most one file past it (written, its append never committed).
:meth:`RecordLog.truncate` deletes that file and nothing else; any other layout (a file
straddling the store's row count, several files past it) means the store lost rows it had
committed, and is refused before anything is cut.
"""

from __future__ import annotations

import bisect
import mmap
import os
import re
import stat
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from .store import StoreCorruptedError, StoreWriteError
from .store.safe_files import (
    CommittedFile,
    describe_kind,
    fsync_directory,
    open_regular,
    prefix_crc32,
    remove_leftover,
    require_directory,
    write_file_atomically,
)

RECORDS_DIR = "records"
_PART = re.compile(r"^(\d{12})-(\d+)-([0-9a-f]{8})\.arrow$")
#: Temp files of interrupted records writes (``write_file_atomically``), deleted on resume.
_TEMP = re.compile(r"^\.\d{12}-\d+-[0-9a-f]{8}\.arrow\.tmp-\d+$")
#: Records files kept mapped per log.
_MAPPED_FILES = 32


class Part(NamedTuple):
    """One records file: records ``first .. first + rows - 1``, ``crc`` the CRC-32 of its bytes."""

    first: int
    rows: int
    crc: str

    @property
    def end(self) -> int:
        return self.first + self.rows

    @property
    def name(self) -> str:
        return f"{self.first:012d}-{self.rows}-{self.crc}.arrow"


class _Mapped(NamedTuple):
    reader: pa.ipc.RecordBatchFileReader
    file: CommittedFile


class RecordLog:
    """The record files in the records folder of the store at ``store_path`` (created on the first
    write); :class:`~fastquant.text_store.TextStore` holds them with the folder's description.

    Listing the folder checks its layout: every file named like a records file is a regular file,
    and the files cover ids ``0 .. len(self) - 1`` once each (a gap, an overlap or a duplicate is
    :class:`~fastquant.store.StoreCorruptedError` naming the files).
    """

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.path = Path(store_path) / RECORDS_DIR
        self._parts: list[Part] = []
        self._starts: list[int] = []
        self._mapped: OrderedDict[Part, _Mapped] = OrderedDict()
        self._validated: set[Part] = set()
        self.reload()

    def reload(self) -> None:
        """Re-read the folder's listing (after another process wrote to it)."""
        self._parts = _list_parts(self.path)
        self._starts = [part.first for part in self._parts]
        self._mapped.clear()

    def __len__(self) -> int:
        """Records stored: the next id to write."""
        return self._parts[-1].end if self._parts else 0

    @property
    def parts(self) -> tuple[Part, ...]:
        """The records files, in id order."""
        return tuple(self._parts)

    @property
    def schema(self) -> pa.Schema | None:
        """The records' columns (those of the first file), None before the first write."""
        return self._batch(self._parts[0]).schema if self._parts else None

    def file(self, part: Part) -> Path:
        return self.path / part.name

    def write(self, first_id: int, batch: pa.RecordBatch) -> None:
        """Store ``batch`` as records ``first_id ...``; ``first_id`` must equal ``len(self)``.

        A failure of the file system (disk full) raises :class:`~fastquant.store.StoreWriteError`
        naming the file, with nothing left behind.
        """
        if first_id != len(self):
            raise ValueError(
                f"records must be written in order: next is {len(self)}, got {first_id}"
            )
        schema = self.schema
        if schema is not None and not batch.schema.equals(schema):
            raise ValueError(
                f"these records have columns {batch.schema.names}, the store's have {schema.names}"
            )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        data = sink.getvalue().to_pybytes()
        part = Part(first_id, batch.num_rows, f"{zlib.crc32(data):08x}")
        try:
            self._make_folder()
            write_file_atomically(self.file(part), data)
        except OSError as error:
            raise StoreWriteError(
                f"writing records {first_id:,} to {part.end - 1:,} failed, nothing was "
                f"committed: {error}"
            ) from error
        self._parts.append(part)
        self._starts.append(first_id)

    def _make_folder(self) -> None:
        try:
            require_directory(self.path)
        except FileNotFoundError:
            self.path.mkdir()

    def uncommitted(self, rows: int) -> list[Part]:
        """The files past a store's ``rows`` committed rows (its ``next_id``: deleted rows
        count), which an interrupted run left.

        Raises :class:`~fastquant.store.StoreCorruptedError` unless ``rows`` falls on a file
        boundary with at most one file past it: every other layout means the store no longer
        holds rows whose records were written for it (its manifest restored from an older copy
        or edited), and nothing may be cut.
        """
        past = [part for part in self._parts if part.end > rows]
        if past and past[0].first < rows:
            raise StoreCorruptedError(
                f"{self.file(past[0])} holds records {past[0].first:,} to {past[0].end - 1:,}, "
                f"the rows of one commit, but the store holds {rows:,} rows: it lost rows it had "
                "committed (was its manifest.json restored or edited?), so fastquant cuts "
                "nothing; restore the store as a whole"
            )
        if len(past) > 1:
            raise StoreCorruptedError(
                f"{self.path} holds {len(past)} commits of records past the store's {rows:,} "
                f"rows (from {self.file(past[0])}); an interrupted run leaves at most one, so "
                "the store lost rows it had committed (was its manifest.json restored or "
                "edited?) and fastquant cuts nothing; restore the store as a whole"
            )
        return past

    def truncate(self, rows: int) -> int:
        """Delete the records past a store's ``rows`` committed rows (its ``next_id``); returns
        how many.

        ``rows`` must be read from the store's checksummed manifest by the holder of its writer
        lock. Only what :meth:`uncommitted` proves to be an interrupted run's leftover is deleted
        (a regular file with one link), with the temp files of interrupted writes.
        """
        past = self.uncommitted(rows)
        for part in past:
            remove_leftover(self.file(part))
            self._mapped.pop(part, None)
        removed = self._remove_temp_files()
        if past or removed:
            fsync_directory(self.path)
        del self._parts[len(self._parts) - len(past) :]
        del self._starts[len(self._starts) - len(past) :]
        return sum(part.rows for part in past)

    def _remove_temp_files(self) -> bool:
        """Delete the temp files (regular files only) that interrupted writes left."""
        removed = False
        if not os.path.isdir(self.path):
            return removed
        for entry in os.scandir(self.path):
            if _TEMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed = True
        return removed

    def require_rows(self, rows: int) -> None:
        """Raise :class:`StoreCorruptedError` unless there is a record for each of ``rows`` rows
        (a store's ``next_id``)."""
        if len(self) < rows:
            raise StoreCorruptedError(f"{self.path} holds {len(self):,} records for {rows:,} rows")

    def table(self) -> pa.Table:
        """Every record, in id order (record ``i`` is row ``i``); no columns before the first write."""
        if not self._parts:
            return pa.table({})
        return pa.Table.from_batches([self._batch(part) for part in self._parts])

    def get(self, ids: Sequence[int]) -> list[dict[str, object]]:
        """The records of ``ids`` as ``{column: value}``, in order; ids must be below ``len(self)``."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise IndexError(f"record {i} does not exist ({len(self)} records)")
            part = self._parts[bisect.bisect_right(self._starts, i) - 1]
            batch = self._batch(part)
            out.append(batch.slice(i - part.first, 1).to_pylist()[0])
        return out

    def _batch(self, part: Part) -> pa.RecordBatch:
        """The records of ``part``, checked once per object (a damaged file could crash Arrow),
        its file re-checked before each use (replaced or cut short: StoreCorruptedError)."""
        file = self.file(part)
        mapped = self._map(part)
        mapped.file.require_unchanged()
        try:
            if mapped.reader.num_record_batches != 1:
                raise ValueError(f"{mapped.reader.num_record_batches} record batches, not one")
            batch = mapped.reader.get_batch(0)
            if part not in self._validated:
                batch.validate(full=True)
        except (pa.ArrowException, OSError, ValueError, SystemError) as error:
            raise StoreCorruptedError(f"cannot read records file {file}: {error}") from error
        if batch.num_rows != part.rows:
            raise StoreCorruptedError(
                f"{file} holds {batch.num_rows} records, expected {part.rows}"
            )
        self._validated.add(part)
        return batch

    def _map(self, part: Part) -> _Mapped:
        """``part``'s file opened as a regular file, memory-mapped (a few kept, most recent last)."""
        if part in self._mapped:
            self._mapped.move_to_end(part)
            return self._mapped[part]
        file = self.file(part)
        fd = _open_part(file)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise StoreCorruptedError(f"cannot read records file {file}: it is empty")
            buffer = mmap.mmap(fd, size, prot=mmap.PROT_READ)
            committed = CommittedFile.of(file, fd, size)
        finally:
            os.close(fd)
        try:
            reader = pa.ipc.open_file(pa.py_buffer(buffer))
        except (pa.ArrowException, OSError, ValueError) as error:
            raise StoreCorruptedError(f"cannot read records file {file}: {error}") from error
        self._mapped[part] = _Mapped(reader, committed)
        if len(self._mapped) > _MAPPED_FILES:
            self._mapped.popitem(last=False)
        return self._mapped[part]

    def verify(self) -> int:
        """Check every records file against the CRC-32 in its name, its Arrow structure and its
        columns (those of the first file); returns the bytes checked."""
        checked = 0
        schema = self.schema
        for part in self._parts:
            file = self.file(part)
            fd = _open_part(file)
            try:
                size = os.fstat(fd).st_size
                crc = prefix_crc32(fd, size, file)
            finally:
                os.close(fd)
            if f"{crc:08x}" != part.crc:
                raise StoreCorruptedError(f"{file} does not match its checksum")
            columns = self._batch(part).schema
            if not columns.equals(schema):
                raise StoreCorruptedError(
                    f"{file} has columns {columns.names}, the first records file {schema.names}"
                )
            checked += size
        return checked


def _open_part(file: Path) -> int:
    """A read descriptor of the records file ``file``, which must be a regular file."""
    try:
        return open_regular(file)
    except FileNotFoundError:
        raise StoreCorruptedError(
            f"records file {file} is missing (it was listed a moment ago)"
        ) from None


def _list_parts(folder: Path) -> list[Part]:
    """The records files of ``folder`` in id order, covering ids ``0 ..`` once each."""
    try:
        require_directory(folder)
    except FileNotFoundError:
        return []
    parts = []
    for entry in os.scandir(folder):
        match = _PART.match(entry.name)
        if not match:
            continue  # index.json, temp files, files of the user's
        mode = entry.stat(follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise StoreCorruptedError(
                f"{entry.path} is {describe_kind(mode)}, not a records file; fastquant follows "
                "no links inside a store: move it away"
            )
        part = Part(int(match[1]), int(match[2]), match[3])
        if part.rows == 0:
            raise StoreCorruptedError(
                f"{entry.path} names 0 records; fastquant writes no such file"
            )
        parts.append(part)
    parts.sort()
    expected, previous = 0, None
    for part in parts:
        if part.first < expected:
            raise StoreCorruptedError(
                f"{folder / previous.name} and {folder / part.name} both hold record "
                f"{part.first:,}: each record is written once, so one of them is a copy or "
                "does not belong here; move it away"
            )
        if part.first > expected:
            after = f"after {folder / previous.name}" if previous else "before the first file"
            raise StoreCorruptedError(
                f"{folder}: records {expected:,} to {part.first - 1:,} are missing ({after}, "
                f"{folder / part.name} holds the next ones)"
            )
        expected, previous = part.end, part
    return parts
