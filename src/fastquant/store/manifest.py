"""The store manifest: what a store holds, checksummed, read and replaced atomically.

``manifest.json`` is the only file a reader trusts. It lists every chunk with its committed row
count and the CRC-32 of those rows' bytes; chunk files may hold more bytes (left by an append
that never committed), which nothing reads. An append writes and flushes its rows first and only
then replaces the manifest: temp file, fsync, rename, fsync of the directory.

Format 2 carries the manifest's own checksum (``json_crc32``, see :mod:`.checked_json`) and says
how the bits were made (``"bits": "sign"``, format 1's only kind, or ``"centred"``: ``x >
centre``, with ``centre.npy`` and a ``.factors`` file per chunk for the asymmetric scan). Format
3 lets the corpus change: every row has an id that never changes and is never reused
(``next_id`` is the next one to give; a chunk's rows have ids from its ``first_id``), deleted
rows are listed in a checksummed file of ids until compaction removes them, and a compacted
chunk is a new generation of files with an explicit list of its ids. Older formats are read with
row ``i`` holding id ``i`` (format 1, fastquant 0.1, as a ``"sign"`` store) and written as
format 3 by the next commit. Every field is checked on reading: an unknown field, a field of the
wrong type, a file name other than the one the format defines are
:class:`StoreCorruptedError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from .checked_json import parse_json, seal, unseal
from .errors import StoreCorruptedError, StoreNotFoundError, StoreVersionError
from .safe_files import read_regular, write_file_atomically

#: Format written by this version; stores of a higher version are refused.
FORMAT_VERSION = 3
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
_FIELDS_3 = {"next_id", "deleted"}
_CHUNK_FIELDS = {"bits", "codes", "rows", "bits_crc32", "codes_crc32"}
#: Chunk fields of format 3; ``factors`` for centred stores (format 2 on), ``ids`` for
#: compacted chunks.
_CHUNK_FIELDS_2 = {"file_id", "generation", "first_id"}
_FACTOR_FIELDS = {"factors", "factors_crc32"}
_ID_FIELDS = {"ids", "ids_crc32"}
_DELETED_FIELDS = {"file", "generation", "rows", "crc32"}

#: Bytes per row of a factors file (two bfloat16) and of an ids file (int64).
FACTOR_BYTES = 4
ID_BYTES = 8


def chunk_file(file_id: int, generation: int, kind: str) -> str:
    """Path, relative to the store, of a chunk's file of ``kind``: ``bits`` (``(rows, ceil(dim /
    8)) uint8``), ``codes`` (``(rows, dim) int8``), ``factors`` (``(rows, 2) uint16``, bfloat16
    ``f, g``) or ``ids`` (``(rows,) int64``). Generation 0 is ``chunks/NNNNNN.kind``; a chunk
    rewritten by compaction is ``chunks/NNNNNN.gG.kind``."""
    generation_part = f".g{generation}" if generation else ""
    return f"{CHUNK_DIR}/{file_id:06d}{generation_part}.{kind}"


def deleted_file(generation: int) -> str:
    """Path, relative to the store, of the list of deleted ids ``(n,) int64``, sorted."""
    return f"{CHUNK_DIR}/deleted-{generation:06d}.ids"


@dataclass(frozen=True)
class ChunkRecord:
    """Committed rows of one chunk, the CRC-32 of their bytes in each file (no factors, or no
    ids file: None), the chunk's file names (``file_id``, ``generation``) and the id of its first
    row: its ids are ``first_id, first_id + 1, ...`` unless it has an ids file."""

    rows: int
    bits_crc32: int
    codes_crc32: int
    factors_crc32: int | None = None
    file_id: int = 0
    generation: int = 0
    first_id: int = 0
    ids_crc32: int | None = None

    @property
    def appendable(self) -> bool:
        """Rows may be added to it: its ids are consecutive (it was never compacted)."""
        return self.ids_crc32 is None and self.generation == 0


@dataclass(frozen=True)
class DeletedRecord:
    """The committed list of deleted ids: its file's generation, length and CRC-32."""

    generation: int
    rows: int
    crc32: int


@dataclass(frozen=True)
class Manifest:
    """Everything needed to read a store; ``rows`` is the sum of the chunks' rows (deleted ones
    included until compaction).

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
    #: The id the next appended row gets; ids are never reused.
    next_id: int = 0
    #: The committed list of deleted ids, or None when no row is deleted.
    deleted: DeletedRecord | None = None
    format_version: int = FORMAT_VERSION
    format: str = field(default=FORMAT_NAME)

    @property
    def rows(self) -> int:
        return sum(chunk.rows for chunk in self.chunks)

    @property
    def live_rows(self) -> int:
        """Rows not deleted."""
        return self.rows - (self.deleted.rows if self.deleted else 0)

    @property
    def bits_width(self) -> int:
        """Bytes per row of packed bits."""
        return (self.dim + 7) // 8

    @property
    def centred(self) -> bool:
        """True when the bits are of ``x - centre`` and every chunk has a factors file."""
        return self.bits == "centred"

    def chunk_files(self, chunk: ChunkRecord) -> list[tuple[str, int, int | None]]:
        """``(path, bytes per row, committed CRC-32)`` of each file of ``chunk``."""
        name = partial(chunk_file, chunk.file_id, chunk.generation)
        files = [
            (name("bits"), self.bits_width, chunk.bits_crc32),
            (name("codes"), self.dim, chunk.codes_crc32),
        ]
        if self.centred:
            files.append((name("factors"), FACTOR_BYTES, chunk.factors_crc32))
        if chunk.ids_crc32 is not None:
            files.append((name("ids"), ID_BYTES, chunk.ids_crc32))
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
        deleted = None
        if self.deleted is not None:
            deleted = {
                "file": deleted_file(self.deleted.generation),
                "generation": self.deleted.generation,
                "rows": self.deleted.rows,
                "crc32": self.deleted.crc32,
            }
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
            "next_id": self.next_id,
            "deleted": deleted,
            "chunks": [self._chunk_json(chunk) for chunk in self.chunks],
        }
        return seal(body).decode()

    def _chunk_json(self, chunk: ChunkRecord) -> dict:
        name = partial(chunk_file, chunk.file_id, chunk.generation)
        body = {
            "bits": name("bits"),
            "codes": name("codes"),
            "rows": chunk.rows,
            "bits_crc32": chunk.bits_crc32,
            "codes_crc32": chunk.codes_crc32,
            "file_id": chunk.file_id,
            "generation": chunk.generation,
            "first_id": chunk.first_id,
        }
        if self.centred:
            body |= {"factors": name("factors"), "factors_crc32": chunk.factors_crc32}
        if chunk.ids_crc32 is not None:
            body |= {"ids": name("ids"), "ids_crc32": chunk.ids_crc32}
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
    bits, centre_crc32, next_id, deleted = "sign", None, None, None
    if version >= 2:
        body = unseal(file, body)
        _require_fields(body, _FIELDS | _FIELDS_2 | (_FIELDS_3 if version >= 3 else set()), "")
        bits = body["bits"]
        if bits not in BIT_KINDS:
            raise ValueError(f"bits is {bits!r}, not one of {', '.join(map(repr, BIT_KINDS))}")
        centre_crc32 = _crc(body, "centre_crc32", nullable=True)
    if version >= 3:
        next_id = _integer(body, "next_id")
        deleted = _deleted(body["deleted"])
    else:
        _require_fields(body, _FIELDS, "")
    centred = bits == "centred"
    chunks, first_id = [], 0
    for i, record in enumerate(_list(body, "chunks")):
        chunks.append(_chunk(i, record, centred, version, first_id))
        first_id = chunks[-1].first_id + chunks[-1].rows
    source = body["calibration_source"]
    if source is not None and not isinstance(source, str):
        raise ValueError(f"calibration_source is {source!r}, not a string or null")
    manifest = Manifest(
        dim=_integer(body, "dim", low=1),
        chunk_rows=_integer(body, "chunk_rows", low=1),
        chunks=tuple(chunks),
        calibration_crc32=_crc(body, "calibration_crc32", nullable=True),
        calibration_source=source,
        bits=bits,
        centre_crc32=centre_crc32,
        next_id=first_id if next_id is None else next_id,
        deleted=deleted,
        format_version=version,
    )
    _check_consistent(manifest, body)
    return manifest


def _deleted(record: Any) -> DeletedRecord | None:
    if record is None:
        return None
    where = "deleted: "
    if not isinstance(record, dict):
        raise ValueError(f"{where}{record!r} is not an object or null")
    _require_fields(record, _DELETED_FIELDS, where)
    generation = _integer(record, "generation", where=where)
    if record["file"] != deleted_file(generation):
        raise ValueError(f"{where}file is {record['file']!r}, not {deleted_file(generation)!r}")
    return DeletedRecord(
        generation, _integer(record, "rows", low=1, where=where), _crc(record, "crc32", where=where)
    )


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


def _chunk(index: int, record: Any, centred: bool, version: int, previous_end: int) -> ChunkRecord:
    """Chunk ``index``; ``previous_end`` is one past the previous chunk's last id (chunks of
    formats 1 and 2, which have no ids of their own, start there)."""
    where = f"chunk {index}: "
    if not isinstance(record, dict):
        raise ValueError(f"{where}{record!r} is not an object")
    expected = _CHUNK_FIELDS | (_FACTOR_FIELDS if centred else set())
    if version >= 3:
        expected |= _CHUNK_FIELDS_2 | (_ID_FIELDS if "ids" in record else set())
    _require_fields(record, expected, where)
    file_id, generation, first_id = index, 0, previous_end
    if version >= 3:
        file_id = _integer(record, "file_id", where=where)
        generation = _integer(record, "generation", where=where)
        first_id = _integer(record, "first_id", where=where)
    kinds = (
        ["bits", "codes"] + (["factors"] if centred else []) + (["ids"] if "ids" in record else [])
    )
    for kind in kinds:
        name = chunk_file(file_id, generation, kind)
        if record[kind] != name:
            raise ValueError(f"{where}{kind} is {record[kind]!r}; this chunk's is {name!r}")
    return ChunkRecord(
        _integer(record, "rows", low=1, where=where),
        _crc(record, "bits_crc32", where=where),
        _crc(record, "codes_crc32", where=where),
        _crc(record, "factors_crc32", where=where) if centred else None,
        file_id=file_id,
        generation=generation,
        first_id=first_id,
        ids_crc32=_crc(record, "ids_crc32", where=where) if "ids" in record else None,
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
    previous = None
    for i, chunk in enumerate(manifest.chunks):
        last = i == len(manifest.chunks) - 1
        if chunk.rows > manifest.chunk_rows or (
            not last and chunk.appendable and chunk.rows != manifest.chunk_rows
        ):
            raise ValueError(
                f"chunk {i} has {chunk.rows} rows; chunks hold {manifest.chunk_rows} (the last, "
                "and compacted ones, 1 to that)"
            )
        if previous is not None and chunk.file_id <= previous.file_id:
            raise ValueError(f"chunk {i}'s file_id {chunk.file_id} does not follow chunk {i - 1}'s")
        if previous is not None and chunk.first_id < previous.first_id + previous.rows:
            raise ValueError(f"chunk {i}'s first_id {chunk.first_id} overlaps chunk {i - 1}'s ids")
        previous = chunk
    if previous is not None and manifest.next_id < previous.first_id + previous.rows:
        raise ValueError(f"next_id {manifest.next_id} is below the last chunk's ids")
    if (
        previous is not None
        and previous.appendable
        and previous.rows < manifest.chunk_rows
        and manifest.next_id != previous.first_id + previous.rows
    ):
        raise ValueError(
            f"next_id {manifest.next_id} does not follow the last chunk's ids (to "
            f"{previous.first_id + previous.rows - 1}), which appends still fill"
        )
    if manifest.deleted is not None and manifest.deleted.rows > manifest.rows:
        raise ValueError(f"it lists {manifest.deleted.rows} deleted rows of {manifest.rows}")
    if manifest.chunks and manifest.calibration_crc32 is None:
        raise ValueError("it lists rows but no calibration")
    if manifest.chunks and manifest.centred and manifest.centre_crc32 is None:
        raise ValueError("it lists rows of centred bits but no centre")
    if not manifest.centred and manifest.centre_crc32 is not None:
        raise ValueError("a store of sign bits has no centre")


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace ``path/manifest.json`` atomically and durably, in the current format."""
    write_file_atomically(path / MANIFEST_NAME, manifest.to_json().encode())
