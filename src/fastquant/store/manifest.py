"""The store manifest: what a store holds, read and replaced atomically.

``manifest.json`` is the only file a reader trusts. It lists every chunk with its committed row
count and the CRC-32 of those rows' bytes; chunk files may hold more bytes (left by an append
that never committed), which nothing reads. An append writes and flushes its rows first and only
then replaces the manifest: temp file, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import StoreCorruptedError, StoreNotFoundError, StoreVersionError

#: Format written by this version; stores of a higher version are refused.
FORMAT_VERSION = 1
FORMAT_NAME = "fastquant-corpus-store"
MANIFEST_NAME = "manifest.json"
CALIBRATION_NAME = "calibration.npy"
CHUNK_DIR = "chunks"


def bits_file(index: int) -> str:
    """Path, relative to the store, of chunk ``index``'s packed bits ``(rows, ceil(dim / 8)) uint8``."""
    return f"{CHUNK_DIR}/{index:06d}.bits"


def codes_file(index: int) -> str:
    """Path, relative to the store, of chunk ``index``'s int8 codes ``(rows, dim) int8``."""
    return f"{CHUNK_DIR}/{index:06d}.codes"


@dataclass(frozen=True)
class ChunkRecord:
    """Committed rows of one chunk and the CRC-32 of their bytes in each file."""

    rows: int
    bits_crc32: int
    codes_crc32: int


@dataclass(frozen=True)
class Manifest:
    """Everything needed to read a store; ``rows`` is the sum of the chunks' rows."""

    dim: int
    chunk_rows: int
    chunks: tuple[ChunkRecord, ...] = ()
    #: CRC-32 of ``calibration.npy``, or None before the int8 ranges are known.
    calibration_crc32: int | None = None
    #: How the int8 ranges were obtained, e.g. ``"first append (1000 rows)"``.
    calibration_source: str | None = None
    format_version: int = FORMAT_VERSION
    format: str = field(default=FORMAT_NAME)

    @property
    def rows(self) -> int:
        return sum(chunk.rows for chunk in self.chunks)

    @property
    def bits_width(self) -> int:
        """Bytes per row of packed bits."""
        return (self.dim + 7) // 8

    def with_chunks(self, chunks: tuple[ChunkRecord, ...], **changes) -> Manifest:
        return replace(self, chunks=chunks, **changes)

    def to_json(self) -> str:
        body = {
            "format": self.format,
            "format_version": self.format_version,
            "dim": self.dim,
            "bits_width": self.bits_width,
            "chunk_rows": self.chunk_rows,
            "rows": self.rows,
            "calibration_crc32": self.calibration_crc32,
            "calibration_source": self.calibration_source,
            "chunks": [
                {"bits": bits_file(i), "codes": codes_file(i), **asdict(chunk)}
                for i, chunk in enumerate(self.chunks)
            ],
        }
        return json.dumps(body, indent=1) + "\n"


def read_manifest(path: Path) -> Manifest:
    """Parse ``path/manifest.json``; every problem is an error naming the file."""
    file = path / MANIFEST_NAME
    try:
        text = file.read_bytes().decode()
    except UnicodeDecodeError as error:
        raise StoreCorruptedError(f"{file} is corrupted: not UTF-8 text ({error})") from error
    except IsADirectoryError:
        raise StoreCorruptedError(f"{file} is a directory, not the store's manifest") from None
    except NotADirectoryError:
        raise StoreNotFoundError(f"{path} is a file, not a fastquant store directory") from None
    except FileNotFoundError:
        if path.is_dir():
            raise StoreNotFoundError(
                f"{path} is not a fastquant store: {MANIFEST_NAME} is missing"
            ) from None
        raise StoreNotFoundError(
            f"no fastquant store at {path}: the directory does not exist"
        ) from None
    try:
        body = json.loads(text)
        if body.get("format") != FORMAT_NAME:
            raise ValueError(f"format is {body.get('format')!r}, not {FORMAT_NAME!r}")
        version = body["format_version"]
        if not isinstance(version, int):
            raise ValueError(f"format_version {version!r} is not an integer")
        if version > FORMAT_VERSION:
            raise StoreVersionError(
                f"{path} was written in store format {version}; this fastquant reads formats up to "
                f"{FORMAT_VERSION}: upgrade fastquant to open it"
            )
        chunks = tuple(
            ChunkRecord(_integer(c, "rows"), _integer(c, "bits_crc32"), _integer(c, "codes_crc32"))
            for c in body["chunks"]
        )
        manifest = Manifest(
            dim=_integer(body, "dim"),
            chunk_rows=_integer(body, "chunk_rows"),
            chunks=chunks,
            calibration_crc32=_integer(body, "calibration_crc32", nullable=True),
            calibration_source=body["calibration_source"],
            format_version=version,
        )
        _check_consistent(manifest, body)
    except StoreVersionError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StoreCorruptedError(f"{file} is corrupted: {error}") from error
    return manifest


def _integer(record: dict, key: str, *, nullable: bool = False) -> int | None:
    """``record[key]`` if it is a JSON integer (or null when ``nullable``), else ValueError."""
    value = record[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} is {value!r}, not an integer")
    return value


def _check_consistent(manifest: Manifest, body: dict) -> None:
    if manifest.dim < 1 or manifest.chunk_rows < 1:
        raise ValueError(
            f"dim {manifest.dim} and chunk_rows {manifest.chunk_rows} must be positive"
        )
    if body["rows"] != manifest.rows:
        raise ValueError(f"rows {body['rows']} != {manifest.rows}, the sum of its chunks' rows")
    for i, chunk in enumerate(manifest.chunks):
        last = i == len(manifest.chunks) - 1
        if not (0 < chunk.rows <= manifest.chunk_rows) or (
            not last and chunk.rows != manifest.chunk_rows
        ):
            raise ValueError(
                f"chunk {i} has {chunk.rows} rows; chunks hold {manifest.chunk_rows} (the last 1 to that)"
            )
    if manifest.chunks and manifest.calibration_crc32 is None:
        raise ValueError("it lists rows but no calibration")


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace ``path/manifest.json`` atomically and durably."""
    write_file_atomically(path / MANIFEST_NAME, manifest.to_json().encode())


def write_file_atomically(file: Path, data: bytes) -> None:
    """Write ``data`` to a temp file, fsync it, rename it over ``file`` and fsync the directory."""
    temp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, file)
    fsync_directory(file.parent)


def fsync_directory(path: Path) -> None:
    """Make renames and new files in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
