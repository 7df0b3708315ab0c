"""Reading records to embed from parquet, CSV or JSONL files, in batches (pyarrow), never whole.

:class:`TextSource` streams a file's rows as Arrow record batches of a fixed size from any row
on; :class:`TextRecipe` turns a batch into the texts to embed, from one column or a template such
as ``"Name: {Medicine Name}. Uses: {Uses}"``.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_READ_ROWS = 4096


class InputError(ValueError):
    """The input file or its columns cannot be used."""


class TextSource:
    """Rows of a parquet, CSV or JSONL file (the format comes from the suffix).

    CSV and JSONL values are read as text, exactly as written (JSONL: non-string values as their
    JSON). Raises :class:`InputError` when the file is missing, of an unknown format, unreadable
    or has repeated column names.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"input file not found: {self.path}")
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise InputError(
                f"cannot read {self.path}: unknown format {self.path.suffix!r} "
                f"(use one of {', '.join(sorted(FORMATS))})"
            )
        self._jsonl: _JsonLines | None = None
        try:
            self.schema = self._open().schema
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"cannot read {self.path} as {self.format}: {error}") from error
        repeated = sorted({name for name in self.schema.names if self.schema.names.count(name) > 1})
        if repeated:
            raise InputError(
                f"{self.path} repeats the column name(s) {', '.join(map(repr, repeated))}: "
                "rename them so that no value is lost"
            )

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def _open(self):
        """A reader of this file's record batches (``.schema``, iterable)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return _ParquetBatches(pq.ParquetFile(self.path))
        if self.format == "csv":
            import pyarrow.csv as pc

            parse = pc.ParseOptions(newlines_in_values=True)  # quoted values may span lines
            names = pc.open_csv(self.path, parse_options=parse).schema.names
            return pc.open_csv(
                self.path,
                read_options=pc.ReadOptions(block_size=1 << 20),
                parse_options=parse,
                convert_options=pc.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    strings_can_be_null=False,
                ),
            )
        if self._jsonl is None:
            self._jsonl = _JsonLines(self.path)
        return self._jsonl

    def count_rows(self) -> int:
        """Rows in the file (parquet: from its metadata; CSV and JSONL: one streaming pass)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        if self.format == "jsonl":
            return self._open().rows
        try:
            return sum(batch.num_rows for batch in self._open())
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"cannot read {self.path}: {error}") from error

    def batches(
        self, batch_rows: int, start: int = 0, stop: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Rows ``[start, stop)`` as record batches of ``batch_rows`` rows (the last may be shorter)."""
        pending: list[pa.RecordBatch] = []
        pending_rows, position = 0, 0
        try:
            for batch in self._open():
                end = position + batch.num_rows
                if stop is not None and end > stop:
                    batch = batch.slice(0, max(stop - position, 0))
                if position < start:
                    batch = batch.slice(min(start - position, batch.num_rows))
                position = end
                if batch.num_rows:
                    pending.append(batch)
                    pending_rows += batch.num_rows
                while pending_rows >= batch_rows:
                    table = pa.Table.from_batches(pending).combine_chunks()
                    yield concat_batches(table.slice(0, batch_rows).to_batches())
                    rest = table.slice(batch_rows)
                    pending, pending_rows = rest.to_batches(), rest.num_rows
                if stop is not None and position >= stop:
                    break
        except pa.ArrowException as error:
            raise InputError(f"cannot read {self.path} near row {position:,}: {error}") from error
        if pending_rows:
            yield concat_batches(pending)


class _ParquetBatches:
    """A parquet file's batches with the ``.schema`` + iteration interface of the CSV/JSON readers."""

    def __init__(self, file) -> None:
        self._file = file
        self.schema = file.schema_arrow

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self._file.iter_batches(batch_size=_READ_ROWS)


class _JsonLines:
    """A JSON Lines file read with the standard ``json`` module, one object per non-blank line.

    Every key of any line is a column; values are kept as text (strings as they are, other values
    as their JSON), so nothing is converted on the way (no dates parsed, no ints made floats) and
    a key first seen late in the file is kept. Opening reads the file once for its keys and rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        keys: dict[str, None] = {}
        self.rows = 0
        for record in self._records():
            keys.update(dict.fromkeys(record))
            self.rows += 1
        self.schema = pa.schema([(key, pa.string()) for key in keys])

    def _records(self) -> Iterator[dict]:
        with open(self.path, "rb") as lines:
            for number, raw in enumerate(lines, 1):
                try:  # a byte-order mark may open the file
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    raise InputError(
                        f"{self.path} line {number} is not UTF-8 text: {error.reason} at byte "
                        f"{error.start + 1} of the line"
                    ) from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as error:
                    raise InputError(f"{self.path} line {number} is not JSON: {error}") from None
                if not isinstance(record, dict):
                    raise InputError(f"{self.path} line {number} is not a JSON object")
                yield record

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        names = self.schema.names
        block: list[dict] = []
        for record in self._records():
            block.append(record)
            if len(block) == _READ_ROWS:
                yield self._batch(block, names)
                block = []
        if block:
            yield self._batch(block, names)

    def _batch(self, block: list[dict], names: list[str]) -> pa.RecordBatch:
        columns = {name: [_as_text(record.get(name)) for record in block] for name in names}
        return pa.RecordBatch.from_pydict(columns, schema=self.schema)


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def concat_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One record batch holding ``batches`` (same schema) one after another."""
    return pa.Table.from_batches(batches).combine_chunks().to_batches(max_chunksize=None)[0]


class TextRecipe:
    """How one record becomes one text: a column's value, or a template of columns.

    Template fields name whole columns, whatever characters the names hold (``{user.name}`` is
    the column ``user.name``); missing values become empty strings. Raises :class:`InputError`
    naming unknown columns or fields a template cannot use.
    """

    def __init__(
        self, columns: Sequence[str], *, text_column: str | None = None, template: str | None = None
    ) -> None:
        if (text_column is None) == (template is None):
            raise InputError("give either a text column or a template, not both or neither")
        if template is not None:
            fields = template_fields(template)
        else:
            fields = [text_column]
        unknown = sorted(set(fields) - set(columns))
        if unknown:
            raise InputError(
                f"unknown column{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}; the input has: {', '.join(map(repr, columns))}"
            )
        self.text_column, self.template = text_column, template
        self.fields = tuple(dict.fromkeys(fields))

    def describe(self) -> dict[str, str]:
        """``{"column": name}`` or ``{"template": text}``, as stored with an index."""
        if self.text_column is not None:
            return {"column": self.text_column}
        return {"template": self.template}

    def texts(self, batch: pa.RecordBatch) -> list[str]:
        """One text per row of ``batch``."""
        values = {name: batch.column(name).to_pylist() for name in self.fields}
        if self.text_column is not None:
            return [_text(value) for value in values[self.text_column]]
        return [
            _WHOLE_NAMES.vformat(
                self.template, (), {name: _text(values[name][i]) for name in self.fields}
            )
            for i in range(batch.num_rows)
        ]


class _WholeNameFormatter(string.Formatter):
    """``str.format`` whose fields are whole column names (no attribute or index lookups)."""

    def get_field(self, field_name: str, args, kwargs) -> tuple[object, str]:
        return kwargs[field_name], field_name


_WHOLE_NAMES = _WholeNameFormatter()


def template_fields(template: str) -> list[str]:
    """The column names ``template`` uses; raises InputError for fields it cannot fill."""
    try:
        parts = list(_WHOLE_NAMES.parse(template))
    except ValueError as error:
        raise InputError(f"bad template {template!r}: {error}") from error
    fields = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name:
            raise InputError(f"the template {template!r} has an empty {{}}: name a column in it")
        if spec or conversion:
            raise InputError(
                f"the template field {{{name}}} has a format spec or conversion; fields are "
                "filled with the column's text as it is"
            )
        fields.append(name)
    if not fields:
        raise InputError(f"the template {template!r} names no column, e.g. {{Name}}")
    return fields


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()
