"""The source records of a store's rows: a folder of Arrow IPC files aligned with the store's ids.

Each committed ingestion batch is one file ``records/<first id>-<rows>-<crc32>.arrow``, written to
a temporary name, flushed and renamed, so it is whole or absent. Record ``i`` is row ``i`` of the
store. Files are memory-mapped to look records up by id.
"""

from __future__ import annotations

import bisect
import os
import re
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from .store import StoreCorruptedError
from .store.manifest import write_file_atomically

RECORDS_DIR = "records"
_PART = re.compile(r"^(\d{12})-(\d+)-([0-9a-f]{8})\.arrow$")


class RecordLog:
    """The record files in the records folder of the store at ``store_path`` (created on the first
    write); :class:`~fastquant.text_store.TextStore` holds them with the folder's description."""

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.path = Path(store_path) / RECORDS_DIR
        self._starts: list[int] = []
        self._parts: list[tuple[int, int, str]] = []  # (first id, rows, crc) sorted by first id
        self._validated: set[tuple[int, int, str]] = set()
        self.reload()

    def reload(self) -> None:
        """Re-read the folder's listing (after another process wrote to it)."""
        parts = []
        if self.path.is_dir():
            for entry in os.listdir(self.path):
                match = _PART.match(entry)
                if match:
                    parts.append((int(match[1]), int(match[2]), match[3]))
        parts.sort()
        expected = 0
        for first, rows, _ in parts:
            if first != expected:
                raise StoreCorruptedError(
                    f"{self.path}: records {expected:,} to {first - 1:,} are missing"
                )
            expected = first + rows
        self._parts = parts
        self._starts = [first for first, _, _ in parts]
        _reader.cache_clear()

    def __len__(self) -> int:
        """Records stored: the next id to write."""
        if not self._parts:
            return 0
        first, rows, _ = self._parts[-1]
        return first + rows

    @property
    def schema(self) -> pa.Schema | None:
        return _reader(str(self._file(self._parts[0]))).schema if self._parts else None

    def _file(self, part: tuple[int, int, str]) -> Path:
        first, rows, crc = part
        return self.path / f"{first:012d}-{rows}-{crc}.arrow"

    def write(self, first_id: int, batch: pa.RecordBatch) -> None:
        """Store ``batch`` as records ``first_id ...``; ``first_id`` must equal ``len(self)``."""
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
        part = (first_id, batch.num_rows, f"{zlib.crc32(data):08x}")
        self.path.mkdir(exist_ok=True)
        write_file_atomically(self._file(part), data)
        self._parts.append(part)
        self._starts.append(first_id)

    def truncate(self, rows: int) -> None:
        """Drop records from id ``rows`` on (those of batches the store never committed)."""
        while self._parts and self._parts[-1][0] + self._parts[-1][1] > rows:
            part = self._parts.pop()
            self._starts.pop()
            batch = _reader(str(self._file(part))).get_batch(0)
            _reader.cache_clear()
            self._file(part).unlink()
            if part[0] < rows:
                self.write(part[0], batch.slice(0, rows - part[0]))
        for entry in os.listdir(self.path) if self.path.is_dir() else ():
            if ".tmp-" in entry:
                (self.path / entry).unlink(missing_ok=True)

    def require_rows(self, rows: int) -> None:
        """Raise :class:`StoreCorruptedError` unless there is a record for each of ``rows`` rows."""
        if len(self) < rows:
            raise StoreCorruptedError(f"{self.path} holds {len(self):,} records for {rows:,} rows")

    def get(self, ids: Sequence[int]) -> list[dict[str, object]]:
        """The records of ``ids`` as ``{column: value}``, in order; ids must be below ``len(self)``."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise IndexError(f"record {i} does not exist ({len(self)} records)")
            part = self._parts[bisect.bisect_right(self._starts, i) - 1]
            batch = self._batch(part)
            out.append(batch.slice(i - part[0], 1).to_pylist()[0])
        return out

    def _batch(self, part: tuple[int, int, str]) -> pa.RecordBatch:
        """The records of ``part``, checked once per object (a damaged file could crash Arrow)."""
        file = self._file(part)
        try:
            batch = _reader(str(file)).get_batch(0)
            if part not in self._validated:
                batch.validate(full=True)
        except (pa.ArrowException, OSError, ValueError, SystemError) as error:
            raise StoreCorruptedError(f"cannot read records file {file}: {error}") from error
        if batch.num_rows != part[1]:
            raise StoreCorruptedError(f"{file} holds {batch.num_rows} records, expected {part[1]}")
        self._validated.add(part)
        return batch

    def verify(self) -> int:
        """Check every records file against the CRC-32 in its name; returns the bytes checked."""
        checked = 0
        for part in self._parts:
            file = self._file(part)
            data = file.read_bytes()
            if f"{zlib.crc32(data):08x}" != part[2]:
                raise StoreCorruptedError(f"{file} does not match its checksum")
            self._batch(part)
            checked += len(data)
        return checked


@lru_cache(maxsize=32)
def _reader(file: str) -> pa.ipc.RecordBatchFileReader:
    return pa.ipc.open_file(pa.memory_map(file))
