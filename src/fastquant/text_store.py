"""The text side of a store directory: ``records/index.json`` and the source records beside it.

A store built by ``fastquant index`` is a :class:`~fastquant.store.CorpusStore` (the vectors)
plus its ``records/`` folder, which :class:`TextStore` owns: the :class:`IndexDescription` in
``index.json`` (model, dimension, text recipe, input columns, source file, first input row) and the
:class:`~fastquant.records.RecordLog` of the records themselves, and ``text_index.json`` beside
``manifest.json``, which says that the store has them (so that a deleted ``records/`` is damage,
not a store of bare vectors). This is the only module that reads or writes these two JSON files;
the format is described in ``docs/store_format.md``.

Both are checked JSON files (:mod:`fastquant.store.checked_json`: their own CRC-32, a size cap, a
nesting limit), opened as the store's files are. An ``index.json`` written before it carried a
checksum is still read (every field checked) and is rewritten sealed by the next
``fastquant index`` run on the store, which also writes ``text_index.json`` if it is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import RECORDS_DIR, RecordLog
from .sources import InputError
from .store import CorpusStore, StoreCorruptedError, StoreVersionError
from .store.checked_json import CHECKSUM_KEY, parse_json, seal, unseal
from .store.safe_files import read_regular, require_directory, write_file_atomically

DESCRIPTION_NAME = "index.json"
#: Beside ``manifest.json``: the store has a text index (``records/``).
MARKER_NAME = "text_index.json"
FORMAT_NAME = "fastquant-text-index"
#: Newest format of ``index.json`` and ``text_index.json`` this version reads and writes: 3 is an
#: ``index.json`` with a ``key_column``; 2 one without it (written so for older readers) and the
#: marker; 1 the unsealed ``index.json`` of fastquant 0.1 (no ``format_version``, no
#: ``json_crc32``, no marker).
FORMAT_VERSION = 3
#: The format of ``text_index.json`` and of an ``index.json`` without a key column.
KEYLESS_VERSION = 2
#: Largest ``index.json`` read (its columns and template are the bulk).
MAX_DESCRIPTION_BYTES = 16 << 20
_MAX_MARKER_BYTES = 4096
_FIELDS = {"model", "dim", "text", "vectors", "columns", "source", "start_row"}
#: Fields of format 3 only.
_KEYED_FIELDS = {"key_column"}
#: Where precomputed vectors came from: a parquet column, or a ``.npy`` file (its path).
VECTOR_SOURCES = ("column", "npy")


@dataclass(frozen=True)
class IndexDescription:
    """How a store's rows were made from an input file: the contents of ``records/index.json``.

    Rows embedded from text have a ``model`` and a ``text`` recipe, ``{"column": name}`` or
    ``{"template": text}``; rows of precomputed embeddings have neither, and ``vectors``, where
    they came from: ``{"column": name}`` (a parquet column) or ``{"npy": path}``. ``columns`` are
    the columns of the records kept; ``source`` and ``start_row`` may be None in descriptions
    written before they were recorded. ``key_column`` names the column whose value identifies
    a record across re-indexing runs (``fastquant index --key-column``), None if there is none.
    """

    model: str | None
    dim: int
    text: dict[str, str] | None
    columns: tuple[str, ...]
    source: str | None = None
    start_row: int | None = None
    vectors: dict[str, str] | None = None
    key_column: str | None = None

    @property
    def made_from(self) -> str:
        """What made the vectors, for messages: ``model 'minilm'`` or ``precomputed embeddings
        (column 'emb')``."""
        if self.vectors is None:
            return f"model {self.model!r}"
        ((kind, where),) = self.vectors.items()
        return f"precomputed embeddings ({'column ' + repr(where) if kind == 'column' else where})"

    def to_json(self) -> bytes:
        """The ``index.json`` bytes of this description (sealed: ``json_crc32`` last)."""
        body = {
            "model": self.model,
            "dim": self.dim,
            "text": self.text,
            "columns": list(self.columns),
            "source": self.source,
            "start_row": self.start_row,
        }
        if self.vectors is not None:
            body["vectors"] = self.vectors
        if self.key_column is None:
            return seal({**body, "format_version": KEYLESS_VERSION})
        return seal({**body, "key_column": self.key_column, "format_version": FORMAT_VERSION})

    @classmethod
    def from_json(cls, data: bytes, file: Path) -> IndexDescription:
        """Parse ``data`` read from ``file``; anything else raises StoreCorruptedError naming it."""
        return _parse_description(data, file)[0]

    def require_same(self, store_path: str | os.PathLike[str], **settings: Any) -> None:
        """Raise :class:`~fastquant.sources.InputError` naming the first of ``settings`` (fields of
        this class, e.g. ``model=..., text=...``) that differs from this description.

        A store is only ever extended with rows made the same way as the rows it holds.
        """
        for key, now in settings.items():
            then = getattr(self, key)
            if _shown(then) == _shown(now):
                continue
            if key in ("text", "vectors") and (then is None) != (now is None):
                built = "from text" if self.vectors is None else f"from {self.made_from}"
                raise InputError(
                    f"{store_path} was indexed {built}, not {'from text' if now is None else key}"
                    "; index into a new directory"
                )
            if key == "model":
                raise InputError(
                    f"{store_path} was indexed with model {then!r}, not {now!r}; "
                    "use the same model or a new directory"
                )
            raise InputError(
                f"{store_path} was indexed with {key} {_shown(then)!r}, not {_shown(now)!r}; "
                "re-run with the same input and options, or use a new directory"
            )


def _parse_description(data: bytes, file: Path) -> tuple[IndexDescription, bool]:
    """The description in ``data`` (the bytes of ``file``) and whether it was sealed."""
    try:
        body = parse_json(file, data)
    except StoreCorruptedError as error:
        raise StoreCorruptedError(
            f"{file} is not a fastquant index description: "
            f"{str(error).removeprefix(f'{file} is corrupted: ')}"
        ) from None
    if not isinstance(body, dict):
        raise StoreCorruptedError(f"{file} is not a fastquant index description: not a JSON object")
    sealed = CHECKSUM_KEY in body or "format_version" in body
    version = KEYLESS_VERSION
    if sealed:
        fields, version = _unseal_versioned(file, body)
    else:
        fields = body
    try:
        unknown = sorted(set(fields) - _FIELDS - (_KEYED_FIELDS if version >= 3 else set()))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        description = IndexDescription(
            model=_field(fields, "model", str, optional=True),
            dim=_field(fields, "dim", int),
            text=_field(fields, "text", dict, optional=True),
            columns=tuple(_field(fields, "columns", list)),
            source=_field(fields, "source", str, optional=True),
            start_row=_field(fields, "start_row", int, optional=True),
            vectors=_field(fields, "vectors", dict, optional=True),
            key_column=_field(fields, "key_column", str, optional=True),
        )
        _check(description)
    except ValueError as error:
        raise StoreCorruptedError(
            f"{file} is not a fastquant index description: {error}"
        ) from error
    return description, sealed


def _unseal_versioned(file: Path, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The fields of a sealed file without ``format_version`` and ``json_crc32``, and its
    format version: a newer format is refused before its checksum is read, a wrong checksum or
    version is damage."""
    version = body.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise StoreVersionError(
            f"{file} is in text index format {version}; this fastquant reads formats up to "
            f"{FORMAT_VERSION}: upgrade fastquant"
        )
    fields = unseal(file, body)
    if fields.pop("format_version", None) not in (KEYLESS_VERSION, FORMAT_VERSION):
        raise StoreCorruptedError(
            f"{file} is corrupted: its format_version is {version!r}, not {KEYLESS_VERSION} or "
            f"{FORMAT_VERSION}"
        )
    return fields, version


def _check(description: IndexDescription) -> None:
    """ValueError unless every field holds a value fastquant writes."""
    if not 0 < description.dim < 1 << 31:
        raise ValueError(f"'dim' is {description.dim}")
    text, vectors = description.text, description.vectors
    if (text is None) == (vectors is None):
        raise ValueError("it needs one of 'text' (a text recipe) and 'vectors' (precomputed)")
    if text is not None:
        if not description.model:
            raise ValueError(f"'model' is {description.model!r}: text needs a model")
        if len(text) != 1 or not isinstance(text.get("column", text.get("template")), str):
            raise ValueError(f"'text' is {text!r}, not {{'column': ...}} or {{'template': ...}}")
    else:
        if description.model is not None:
            raise ValueError(f"'model' is {description.model!r} for precomputed vectors")
        if len(vectors) != 1 or not all(
            kind in VECTOR_SOURCES and isinstance(where, str) and where
            for kind, where in vectors.items()
        ):
            raise ValueError(f"'vectors' is {vectors!r}, not {{'column': ...}} or {{'npy': ...}}")
    columns = description.columns
    if not all(isinstance(name, str) for name in columns) or len(set(columns)) != len(columns):
        raise ValueError(f"'columns' is {list(columns)!r}, not a list of distinct names")
    if description.start_row is not None and description.start_row < 0:
        raise ValueError(f"'start_row' is {description.start_row}")
    key = description.key_column
    if key is not None and (text is None or key not in columns):
        raise ValueError(f"'key_column' is {key!r}, not one of the columns of a text index")


def _field(body: dict, key: str, kind: type, *, optional: bool = False) -> Any:
    """``body[key]`` if it is a ``kind`` (None allowed when ``optional``), else ValueError."""
    value = body.get(key)
    if value is None and optional:
        return None
    if key not in body:
        raise ValueError(f"{key!r} is missing")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key!r} is {value!r}, not a {kind.__name__}")
    return value


def _shown(value: object) -> object:
    """``value`` as ``index.json`` holds it (columns as a list), to compare and to show."""
    return list(value) if isinstance(value, tuple) else value


def _read(file: Path, max_bytes: int) -> bytes | None:
    """The bytes of the regular file ``file`` (None if it does not exist); StoreCorruptedError
    naming it for anything else in its place."""
    try:
        return read_regular(file, max_bytes)
    except FileNotFoundError:
        return None
    except StoreCorruptedError as error:
        raise StoreCorruptedError(
            f"cannot read {file}: it {str(error).removeprefix(f'{file} ')}"
        ) from None


def _marker_bytes() -> bytes:
    return seal({"format": FORMAT_NAME, "format_version": KEYLESS_VERSION})


def _read_marker(file: Path) -> bool:
    """Whether ``file`` (``text_index.json``) exists; it must then be the marker this module writes."""
    data = _read(file, _MAX_MARKER_BYTES)
    if data is None:
        return False
    body = parse_json(file, data)
    if not isinstance(body, dict):
        raise StoreCorruptedError(f"{file} is corrupted: it holds {type(body).__name__}")
    fields, _ = _unseal_versioned(file, body)
    if fields != {"format": FORMAT_NAME}:
        raise StoreCorruptedError(f"{file} is corrupted: {fields!r} is not a text index marker")
    return True


class TextStore:
    """The ``records/`` folder of the store at ``store_path``: its description and its records.

    ``description`` is None for a store that was not indexed from a file (or not yet described);
    ``records`` is the :class:`~fastquant.records.RecordLog` aligned with the store's row ids.
    Open one with :meth:`open`; nothing is written until :meth:`describe`, :meth:`upgrade` or a
    records write.
    """

    def __init__(
        self,
        store_path: Path,
        description: IndexDescription | None,
        *,
        sealed: bool = True,
        marked: bool = False,
    ) -> None:
        """Use :meth:`open`."""
        self.store_path = store_path
        self.description = description
        #: ``index.json`` carries its checksum (False: an older file, to be rewritten).
        self.sealed = sealed
        #: ``text_index.json`` exists: the store must have its records.
        self.marked = marked
        self.records = RecordLog(store_path)

    @classmethod
    def open(cls, store_path: str | os.PathLike[str]) -> TextStore:
        """Read ``records/index.json`` of ``store_path`` (absent: no description) and list the
        records; a damaged description, marker or records folder raises
        :class:`~fastquant.store.StoreCorruptedError` naming the file."""
        store_path = Path(store_path)
        folder, description, sealed = store_path / RECORDS_DIR, None, True
        try:
            require_directory(folder)
        except FileNotFoundError:
            data = None
        else:
            data = _read(folder / DESCRIPTION_NAME, MAX_DESCRIPTION_BYTES)
        if data is not None:
            description, sealed = _parse_description(data, folder / DESCRIPTION_NAME)
        marked = _read_marker(store_path / MARKER_NAME)
        return cls(store_path, description, sealed=sealed, marked=marked)

    @property
    def description_file(self) -> Path:
        return self.store_path / RECORDS_DIR / DESCRIPTION_NAME

    @property
    def marker_file(self) -> Path:
        return self.store_path / MARKER_NAME

    def describe(self, description: IndexDescription) -> None:
        """Write ``description`` as ``records/index.json``, then ``text_index.json`` (each
        atomically: whole or absent). For the holder of the store's writer lock."""
        self.records._make_folder()
        write_file_atomically(self.description_file, description.to_json())
        self.description, self.sealed = description, True
        if not self.marked:
            write_file_atomically(self.marker_file, _marker_bytes())
            self.marked = True

    def upgrade(self) -> None:
        """Rewrite an older unsealed ``index.json`` sealed and add a missing ``text_index.json``.
        For the holder of the store's writer lock."""
        if self.description is not None and not (self.sealed and self.marked):
            self.describe(self.description)

    def require_description(self) -> IndexDescription:
        """The description; StoreCorruptedError if the store was not indexed from a file."""
        if self.description is None:
            if self.marked:
                raise StoreCorruptedError(self._missing_description())
            raise StoreCorruptedError(
                f"{self.store_path} has no {RECORDS_DIR}/ description: it was not built by "
                "fastquant index, so it cannot be searched by text"
            )
        return self.description

    def _missing_description(self) -> str:
        return (
            f"{self.description_file} is missing, but {self.marker_file} says that the store was "
            "built by fastquant index with its records"
        )

    def verify(self, rows: int, dim: int | None = None) -> int:
        """Check the text index of a store whose ``next_id`` is ``rows`` (every row it ever
        committed, deleted ones too) of dimension ``dim``: its description, one record per row (at most one interrupted commit's records past them), each records
        file against its CRC-32 and its columns against the description's.

        Returns the bytes checked (0 for a store without records). Raises
        :class:`~fastquant.store.StoreCorruptedError` naming the file at fault, also when records
        exist without their description.
        """
        if self.description is None:
            if self.marked:
                raise StoreCorruptedError(self._missing_description())
            if len(self.records):
                raise StoreCorruptedError(f"{self.description_file} is missing")
            return 0
        if dim is not None and self.description.dim != dim:
            raise StoreCorruptedError(
                f"{self.description_file} describes {self.description.dim}-d vectors, but the "
                f"store holds {dim}-d ones"
            )
        self.records.uncommitted(rows)
        self.records.require_rows(rows)
        checked = self.records.verify()
        schema = self.records.schema
        if schema is not None and schema.names != list(self.description.columns):
            raise StoreCorruptedError(
                f"{self.description_file} lists the columns {list(self.description.columns)}, "
                f"but the records have {schema.names}"
            )
        return checked


def verify_store(store_path: str | os.PathLike[str]) -> tuple[int, int]:
    """Check every committed byte of the store at ``store_path`` and of its text index, if it has
    one; returns ``(live rows, bytes checked)``. The first damage found raises
    :class:`~fastquant.store.StoreCorruptedError` naming its file."""
    with CorpusStore.open(store_path) as store:
        checked = store.verify()
        rows, next_id, dim = len(store), store.next_id, store.dim
    return rows, checked + TextStore.open(store_path).verify(next_id, dim)
