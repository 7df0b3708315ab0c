"""The store manifest: what a store holds, checksummed, read and replaced atomically.

``manifest.json`` is the only file a reader trusts. It lists every chunk with its committed row
count and the CRC-32 of those rows' bytes; chunk files may hold more bytes (left by an append
that never committed), which nothing reads. An append writes and flushes its rows first and only
then replaces the manifest: temp file, fsync, rename, fsync of the directory.

Format 2 carries the manifest's own checksum (``json_crc32``, see :mod:`.checked_json`) and says
how the bits were made: ``"bits": "sign"`` (``x > 0``, format 1's only kind) or ``"centred"``
(``x > centre``, with ``centre.npy`` and a ``.factors`` file per chunk for the asymmetric scan).
Format 1 (fastquant 0.1) has neither; it is read as a ``"sign"`` store and written as format 2
by the next commit.
Every field is checked on reading: an unknown field, a field of the wrong type, a chunk path or
``bits_width`` other than the ones the format defines are :class:`StoreCorruptedError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .checked_json import parse_json, seal, unseal
from .errors import StoreCorruptedError, StoreNotFoundError, StoreVersionError
from .safe_files import read_regular, write_file_atomically

#: Format written by this version; stores of a higher version are refused.
FORMAT_VERSION = 2
#: The first format, fastquant 0.1's: the same fields without ``json_crc32``.
LEGACY_FORMAT_VERSION = 1
FORMAT_NAME = "fastquant-corpus-store"
MANIFEST_NAME = "manifest.json"
CALIBRATION_NAME = "calibration.npy"
CENTRE_NAME = "centre.npy"
CHUNK_DIR = "chunks"

#: How a store's bits are made: sign bits of ``x``, or of ``x - centre`` with row factors.
BIT_KINDS = ("centred", "sign")

#: Largest manifest read: about 170 bytes per chunk, so 64 MiB is some 400,000 chunks.
MAX_MANIFEST_BYTES = 64 << 20

#: Counts and sizes beyond this are damage, not data (NumPy indexes with int64).
_MAX_COUNT = (1 << 63) - 1

#: Top-level fields of a format-1 manifest; format 2 adds ``json_crc32`` and ``_FIELDS_2``.
_FIELDS = {
    "format",
    "format_version",
    "dim",
    "bits_width",
    "chunk_rows",
    "rows",
    "calibration_crc32",
    "calibration_source",
    "chunks",
}
_FIELDS_2 = {"bits", "centre_crc32"}
_CHUNK_FIELDS = {"bits", "codes", "rows", "bits_crc32", "codes_crc32"}
#: Chunk fields of a centred store (format 2).
_FACTOR_FIELDS = {"factors", "factors_crc32"}


def bits_file(index: int) -> str:
    """Path, relative to the store, of chunk ``index``'s packed bits ``(rows, ceil(dim / 8)) uint8``."""
    return f"{CHUNK_DIR}/{index:06d}.bits"


def codes_file(index: int) -> str:
    """Path, relative to the store, of chunk ``index``'s int8 codes ``(rows, dim) int8``."""
    return f"{CHUNK_DIR}/{index:06d}.codes"


def factors_file(index: int) -> str:
    """Path, relative to the store, of chunk ``index``'s row factors ``(rows, 2) uint16``
    (bfloat16 ``f, g`` of the asymmetric scan; centred stores only)."""
    return f"{CHUNK_DIR}/{index:06d}.factors"


#: Bytes per row of a factors file.
FACTOR_BYTES = 4


@dataclass(frozen=True)
class ChunkRecord:
    """Committed rows of one chunk and the CRC-32 of their bytes in each file (no factors: None)."""

    rows: int
    bits_crc32: int
    codes_crc32: int
    factors_crc32: int | None = None


@dataclass(frozen=True)
class Manifest:
    """Everything needed to read a store; ``rows`` is the sum of the chunks' rows.

    ``format_version`` is the format it was read in; a manifest is always written in
    :data:`FORMAT_VERSION` (``with_chunks`` moves it there).
    """

    dim: int
    chunk_rows: int
    chunks: tuple[ChunkRecord, ...] = ()
    #: CRC-32 of ``calibration.npy``, or None before the int8 ranges are known.
    calibration_crc32: int | None = None
    #: How the int8 ranges were obtained, e.g. ``"first append (1000 rows)"``.
    calibration_source: str | None = None
    #: ``"centred"`` or ``"sign"`` (see ``BIT_KINDS``).
    bits: str = "centred"
    #: CRC-32 of ``centre.npy`` (centred stores), or None before the centre is known.
    centre_crc32: int | None = None
    format_version: int = FORMAT_VERSION
    format: str = field(default=FORMAT_NAME)

    @property
    def rows(self) -> int:
        return sum(chunk.rows for chunk in self.chunks)

    @property
    def bits_width(self) -> int:
        """Bytes per row of packed bits."""
        return (self.dim + 7) // 8

    @property
    def centred(self) -> bool:
        """True when the bits are of ``x - centre`` and every chunk has a factors file."""
        return self.bits == "centred"

    def chunk_files(self, index: int) -> list[tuple[str, int, int | None]]:
        """``(path, bytes per row, committed CRC-32)`` of each file of chunk ``index``."""
        chunk = self.chunks[index] if index < len(self.chunks) else ChunkRecord(0, 0, 0, 0)
        files = [
            (bits_file(index), self.bits_width, chunk.bits_crc32),
            (codes_file(index), self.dim, chunk.codes_crc32),
        ]
        if self.centred:
            files.append((factors_file(index), FACTOR_BYTES, chunk.factors_crc32))
        return files

    @property
    def checksummed(self) -> bool:
        """True when the manifest proved itself with its own checksum (format 2 on)."""
        return self.format_version >= 2

    def with_chunks(self, chunks: tuple[ChunkRecord, ...], **changes) -> Manifest:
        """The next committed state: ``chunks`` (and ``changes``), in the current format."""
        return replace(self, chunks=chunks, format_version=FORMAT_VERSION, **changes)

    def to_json(self) -> str:
        """The text of ``manifest.json`` in the current format, ``json_crc32`` last."""
        body = {
            "format": self.format,
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "bits_width": self.bits_width,
            "chunk_rows": self.chunk_rows,
            "rows": self.rows,
            "calibration_crc32": self.calibration_crc32,
            "calibration_source": self.calibration_source,
            "bits": self.bits,
            "centre_crc32": self.centre_crc32,
            "chunks": [self._chunk_json(i, chunk) for i, chunk in enumerate(self.chunks)],
        }
        return seal(body).decode()

    def _chunk_json(self, index: int, chunk: ChunkRecord) -> dict:
        body = {
            "bits": bits_file(index),
            "codes": codes_file(index),
            "rows": chunk.rows,
            "bits_crc32": chunk.bits_crc32,
            "codes_crc32": chunk.codes_crc32,
        }
        if self.centred:
            body |= {"factors": factors_file(index), "factors_crc32": chunk.factors_crc32}
        return body


def read_manifest(path: Path) -> Manifest:
    """Parse and check ``path/manifest.json``; every problem is an error naming the file.

    :class:`StoreNotFoundError` when ``path`` holds no store, :class:`StoreVersionError` for a
    newer format, :class:`StoreCorruptedError` for anything else wrong with it.
    """
    file = path / MANIFEST_NAME
    if not path.is_dir():
        if path.exists():
            raise StoreNotFoundError(f"{path} is a file, not a fastquant store directory")
        raise StoreNotFoundError(f"no fastquant store at {path}: the directory does not exist")
    try:
        data = read_regular(file, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise StoreNotFoundError(
            f"{path} is not a fastquant store: {MANIFEST_NAME} is missing"
        ) from None
    body = parse_json(file, data)
    try:
        return _parse(file, body)
    except StoreCorruptedError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise StoreCorruptedError(f"{file} is corrupted: {error}") from error


def _parse(file: Path, body: Any) -> Manifest:
    if not isinstance(body, dict):
        raise ValueError(f"it holds {type(body).__name__}, not an object")
    if body.get("format") != FORMAT_NAME:
        raise ValueError(f"format is {body.get('format')!r}, not {FORMAT_NAME!r}")
    version = _integer(body, "format_version", low=-_MAX_COUNT)
    if version > FORMAT_VERSION:
        raise StoreVersionError(
            f"{file.parent} was written in store format {version}; this fastquant reads formats "
            f"up to {FORMAT_VERSION}: upgrade fastquant to open it"
        )
    if version < LEGACY_FORMAT_VERSION:
        raise ValueError(f"format_version {version} is not a store format")
    bits, centre_crc32 = "sign", None
    if version >= 2:
        body = unseal(file, body)
        _require_fields(body, _FIELDS | _FIELDS_2, "")
        bits = body["bits"]
        if bits not in BIT_KINDS:
            raise ValueError(f"bits is {bits!r}, not one of {', '.join(map(repr, BIT_KINDS))}")
        centre_crc32 = _crc(body, "centre_crc32", nullable=True)
    else:
        _require_fields(body, _FIELDS, "")
    centred = bits == "centred"
    chunks = tuple(_chunk(i, record, centred) for i, record in enumerate(_list(body, "chunks")))
    source = body["calibration_source"]
    if source is not None and not isinstance(source, str):
        raise ValueError(f"calibration_source is {source!r}, not a string or null")
    manifest = Manifest(
        dim=_integer(body, "dim", low=1),
        chunk_rows=_integer(body, "chunk_rows", low=1),
        chunks=chunks,
        calibration_crc32=_crc(body, "calibration_crc32", nullable=True),
        calibration_source=source,
        bits=bits,
        centre_crc32=centre_crc32,
        format_version=version,
    )
    _check_consistent(manifest, body)
    return manifest


def _require_fields(record: dict, expected: set[str], where: str) -> None:
    missing, unknown = expected - record.keys(), record.keys() - expected
    if missing:
        raise ValueError(f"{where}field {sorted(missing)[0]!r} is missing")
    if unknown:
        raise ValueError(f"{where}field {sorted(unknown)[0]!r} is not part of the format")


def _list(record: dict, key: str) -> list:
    value = record[key]
    if not isinstance(value, list):
        raise ValueError(f"{key} is {type(value).__name__}, not a list")
    return value


def _chunk(index: int, record: Any, centred: bool) -> ChunkRecord:
    where = f"chunk {index}: "
    if not isinstance(record, dict):
        raise ValueError(f"{where}{record!r} is not an object")
    _require_fields(record, _CHUNK_FIELDS | (_FACTOR_FIELDS if centred else set()), where)
    paths = [("bits", bits_file(index)), ("codes", codes_file(index))]
    if centred:
        paths.append(("factors", factors_file(index)))
    for key, expected in paths:
        if record[key] != expected:
            raise ValueError(f"{where}{key} is {record[key]!r}; chunk {index} is {expected!r}")
    return ChunkRecord(
        _integer(record, "rows", low=1, where=where),
        _crc(record, "bits_crc32", where=where),
        _crc(record, "codes_crc32", where=where),
        _crc(record, "factors_crc32", where=where) if centred else None,
    )


def _integer(
    record: dict, key: str, *, low: int = 0, high: int = _MAX_COUNT, where: str = ""
) -> int:
    """``record[key]`` if it is a JSON integer in ``[low, high]``, else ValueError."""
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}{key} is {value!r}, not an integer")
    if not low <= value <= high:
        raise ValueError(f"{where}{key} is {value}, outside [{low}, {high}]")
    return value


def _crc(record: dict, key: str, *, nullable: bool = False, where: str = "") -> int | None:
    if nullable and record[key] is None:
        return None
    return _integer(record, key, high=0xFFFFFFFF, where=where)


def _check_consistent(manifest: Manifest, body: dict) -> None:
    if body["bits_width"] != manifest.bits_width:
        raise ValueError(
            f"bits_width is {body['bits_width']!r}; {manifest.dim} dimensions take "
            f"{manifest.bits_width} bytes"
        )
    if body["rows"] != manifest.rows:
        raise ValueError(f"rows {body['rows']!r} != {manifest.rows}, the sum of its chunks' rows")
    for i, chunk in enumerate(manifest.chunks):
        last = i == len(manifest.chunks) - 1
        if chunk.rows > manifest.chunk_rows or (not last and chunk.rows != manifest.chunk_rows):
            raise ValueError(
                f"chunk {i} has {chunk.rows} rows; chunks hold {manifest.chunk_rows} (the last 1 to that)"
            )
    if manifest.chunks and manifest.calibration_crc32 is None:
        raise ValueError("it lists rows but no calibration")
    if manifest.chunks and manifest.centred and manifest.centre_crc32 is None:
        raise ValueError("it lists rows of centred bits but no centre")
    if not manifest.centred and manifest.centre_crc32 is not None:
        raise ValueError("a store of sign bits has no centre")


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace ``path/manifest.json`` atomically and durably, in the current format."""
    write_file_atomically(path / MANIFEST_NAME, manifest.to_json().encode())
