"""The text side of a store directory: ``records/index.json`` and the source records beside it.

A store built by ``fastquant index`` is a :class:`~fastquant.store.CorpusStore` (the vectors)
plus its ``records/`` folder, which :class:`TextStore` owns: the :class:`IndexDescription` in
``index.json`` (model, dimension, text recipe, input columns, source file, first input row) and the
:class:`~fastquant.records.RecordLog` of the records themselves. This is the only module that reads
or writes ``index.json``; the format is described in ``docs/store_format.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import RECORDS_DIR, RecordLog
from .sources import InputError
from .store import StoreCorruptedError
from .store.manifest import write_file_atomically

DESCRIPTION_NAME = "index.json"


@dataclass(frozen=True)
class IndexDescription:
    """How a store's rows were made from an input file: the contents of ``records/index.json``.

    ``text`` is the text recipe, ``{"column": name}`` or ``{"template": text}``; ``source`` and
    ``start_row`` may be None in descriptions written before they were recorded.
    """

    model: str
    dim: int
    text: dict[str, str]
    columns: tuple[str, ...]
    source: str | None = None
    start_row: int | None = None

    def to_json(self) -> bytes:
        """The ``index.json`` bytes of this description."""
        body = {
            "model": self.model,
            "dim": self.dim,
            "text": self.text,
            "columns": list(self.columns),
            "source": self.source,
            "start_row": self.start_row,
        }
        return json.dumps(body, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes, file: Path) -> IndexDescription:
        """Parse ``data`` read from ``file``; anything else raises StoreCorruptedError naming it."""
        try:
            body = json.loads(data)
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            description = cls(
                model=_field(body, "model", str),
                dim=_field(body, "dim", int),
                text=_field(body, "text", dict),
                columns=tuple(_field(body, "columns", list)),
                source=_field(body, "source", str, optional=True),
                start_row=_field(body, "start_row", int, optional=True),
            )
            if description.dim < 1:
                raise ValueError(f"'dim' is {description.dim}")
            text = description.text
            if len(text) != 1 or not isinstance(text.get("column", text.get("template")), str):
                raise ValueError(
                    f"'text' is {text!r}, not {{'column': ...}} or {{'template': ...}}"
                )
            if not all(isinstance(name, str) for name in description.columns):
                raise ValueError(f"'columns' is {list(description.columns)!r}")
        except ValueError as error:  # JSON and UTF-8 errors are ValueErrors too
            raise StoreCorruptedError(
                f"{file} is not a fastquant index description: {error}"
            ) from error
        return description

    def require_same(self, store_path: str | os.PathLike[str], **settings: Any) -> None:
        """Raise :class:`~fastquant.sources.InputError` naming the first of ``settings`` (fields of
        this class, e.g. ``model=..., text=...``) that differs from this description.

        A store is only ever extended with rows made the same way as the rows it holds.
        """
        for key, now in settings.items():
            then = getattr(self, key)
            if _shown(then) == _shown(now):
                continue
            if key == "model":
                raise InputError(
                    f"{store_path} was indexed with model {then!r}, not {now!r}; "
                    "use the same model or a new directory"
                )
            raise InputError(
                f"{store_path} was indexed with {key} {_shown(then)!r}, not {_shown(now)!r}; "
                "re-run with the same input and options, or use a new directory"
            )


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


class TextStore:
    """The ``records/`` folder of the store at ``store_path``: its description and its records.

    ``description`` is None for a store that was not indexed from a file (or not yet described);
    ``records`` is the :class:`~fastquant.records.RecordLog` aligned with the store's row ids.
    Open one with :meth:`open`; nothing is written until :meth:`describe` or a records write.
    """

    def __init__(self, store_path: Path, description: IndexDescription | None) -> None:
        """Use :meth:`open`."""
        self.store_path = store_path
        self.description = description
        self.records = RecordLog(store_path)

    @classmethod
    def open(cls, store_path: str | os.PathLike[str]) -> TextStore:
        """Read ``records/index.json`` of ``store_path`` (absent: no description) and list the
        records; a damaged description raises :class:`~fastquant.store.StoreCorruptedError`."""
        store_path = Path(store_path)
        file = store_path / RECORDS_DIR / DESCRIPTION_NAME
        try:
            data = file.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return cls(store_path, None)
        except OSError as error:
            raise StoreCorruptedError(f"cannot read {file}: {error}") from error
        return cls(store_path, IndexDescription.from_json(data, file))

    @property
    def description_file(self) -> Path:
        return self.store_path / RECORDS_DIR / DESCRIPTION_NAME

    def describe(self, description: IndexDescription) -> None:
        """Write ``description`` as ``records/index.json`` (atomically: whole or absent)."""
        self.description_file.parent.mkdir(exist_ok=True)
        write_file_atomically(self.description_file, description.to_json())
        self.description = description

    def require_description(self) -> IndexDescription:
        """The description; StoreCorruptedError if the store was not indexed from a file."""
        if self.description is None:
            raise StoreCorruptedError(
                f"{self.store_path} has no {RECORDS_DIR}/ description: it was not built by "
                "fastquant index, so it cannot be searched by text"
            )
        return self.description

    def verify(self, rows: int) -> int:
        """Check the records of a store of ``rows`` rows: one per row, each file against its CRC-32.

        Returns the bytes checked (0 for a store without records). Raises
        :class:`~fastquant.store.StoreCorruptedError` naming the file at fault, also when records
        exist without their description.
        """
        if self.description is None:
            if len(self.records):
                raise StoreCorruptedError(f"{self.description_file} is missing")
            return 0
        self.records.require_rows(rows)
        return self.records.verify()
