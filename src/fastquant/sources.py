"""Reading records to embed from parquet, CSV or JSONL files, in batches (pyarrow), never whole.

:class:`TextSource` streams a file's rows as Arrow record batches of a fixed size from any row
on; :class:`TextRecipe` turns a batch into the texts to embed, from one column or a template such
as ``"Name: {Medicine Name}. Uses: {Uses}"``.
"""

from __future__ import annotations

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

    CSV columns are read as strings, exactly as written. Raises :class:`InputError` when the file is
    missing, of an unknown format or unreadable.
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
        try:
            self.schema = self._open().schema
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"cannot read {self.path} as {self.format}: {error}") from error

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def _open(self):
        """A reader of this file's record batches (``.schema``, iterable)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            file = pq.ParquetFile(self.path)
            return _ParquetBatches(file)
        if self.format == "csv":
            import pyarrow.csv as pc

            names = pc.open_csv(self.path).schema.names
            return pc.open_csv(
                self.path,
                read_options=pc.ReadOptions(block_size=1 << 20),
                convert_options=pc.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    strings_can_be_null=False,
                ),
            )
        import pyarrow.json as pj

        return pj.open_json(self.path, read_options=pj.ReadOptions(block_size=1 << 20))

    def count_rows(self) -> int:
        """Rows in the file (parquet: from its metadata; CSV and JSONL: one streaming pass)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
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


def concat_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One record batch holding ``batches`` (same schema) one after another."""
    return pa.Table.from_batches(batches).combine_chunks().to_batches(max_chunksize=None)[0]


class TextRecipe:
    """How one record becomes one text: a column's value, or a ``str.format`` template of columns.

    Missing values become empty strings. Raises :class:`InputError` naming unknown columns.
    """

    def __init__(
        self, columns: Sequence[str], *, text_column: str | None = None, template: str | None = None
    ) -> None:
        if (text_column is None) == (template is None):
            raise InputError("give either a text column or a template, not both or neither")
        if template is not None:
            try:
                fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
            except ValueError as error:
                raise InputError(f"bad template {template!r}: {error}") from error
            if not fields:
                raise InputError(f"the template {template!r} names no column, e.g. {{Name}}")
        else:
            fields = [text_column]
            template = "{" + text_column + "}"
        unknown = sorted(set(fields) - set(columns))
        if unknown:
            raise InputError(
                f"unknown column{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}; the input has: {', '.join(map(repr, columns))}"
            )
        self.text_column, self.template, self.fields = (
            text_column,
            template,
            tuple(dict.fromkeys(fields)),
        )

    def describe(self) -> dict[str, str]:
        """``{"column": name}`` or ``{"template": text}``, as stored with an index."""
        if self.text_column is not None:
            return {"column": self.text_column}
        return {"template": self.template}

    def texts(self, batch: pa.RecordBatch) -> list[str]:
        """One text per row of ``batch``."""
        values = {name: batch.column(name).to_pylist() for name in self.fields}
        return [
            self.template.format_map({name: _text(values[name][i]) for name in self.fields})
            for i in range(batch.num_rows)
        ]


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()
