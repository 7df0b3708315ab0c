"""Precomputed embeddings as the vectors of ``fastquant index``: a parquet column or a ``.npy`` file.

Pipelines that already have vectors (computed on a GPU, bought from an API) index them through
the stages of text indexing (:mod:`fastquant.pipeline`: streaming, calibration, commits,
records, resume, progress); these :class:`~fastquant.pipeline.VectorSource` s take the model's
place:

- :class:`ColumnVectors`: a parquet column of float lists (``list``, ``large_list`` or
  ``fixed_size_list`` of float16, float32 or float64), read with the rest of each record; the
  records keep the other columns;
- :class:`NpyVectors`: a 2-D float ``.npy`` file, memory-mapped and read one batch at a time; its
  row ``i`` belongs to input row ``i``, or, without an input, to the record ``{"row": i}``
  (:class:`RowNumbers`).

Every batch is checked before anything of it is committed: one vector per row, of the dimension
of the first, no missing value, no NaN or Inf, nothing beyond float32. A failure is
:class:`~fastquant.sources.InputError` naming the row (its number in the input) and the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .sources import InputError, TextSource

#: Value types of an embedding column, and dtypes of a ``.npy`` of embeddings.
FLOAT_TYPES = (pa.float16(), pa.float32(), pa.float64())
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
ROW_COLUMN = "row"


class ColumnVectors:
    """The vectors in the list column ``column`` of the parquet file of ``source``."""

    model = None

    def __init__(self, source: TextSource, column: str) -> None:
        self.column, self.where = column, f"column {column!r} of {source.path}"
        if source.format != "parquet":
            raise InputError(
                f"an embedding column is read from parquet; {source.path} is {source.format}"
            )
        if column not in source.columns:
            raise InputError(
                f"unknown column {column!r}; the input has: {', '.join(map(repr, source.columns))}"
            )
        kind = source.schema.field(column).type
        if not _is_list(kind) or kind.value_type not in FLOAT_TYPES:
            raise InputError(
                f"{self.where} holds {kind}, not lists of floats (float16, float32 or float64)"
            )
        if pa.types.is_fixed_size_list(kind):
            self.dim = kind.list_size
        else:  # the first row's length; every other row must have it too
            self.dim = len(
                _vector_rows(next(source.batches(1)).column(column), None, 0, self.where)[0]
            )
        if self.dim < 1:
            raise InputError(f"{self.where} holds empty vectors")

    def describe(self) -> dict[str, dict[str, str]]:
        return {"vectors": {"column": self.column}}

    def records(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.drop_columns([self.column])

    def vectors(self, records: pa.RecordBatch, first_row: int) -> np.ndarray:
        rows = _vector_rows(records.column(self.column), self.dim, first_row, self.where)
        return checked_float32(rows, first_row, self.where)


class NpyVectors:
    """The rows of the 2-D float ``.npy`` file ``path``, memory-mapped."""

    model = None

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"embeddings file not found: {self.path}")
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InputError(f"cannot read {self.path} as a .npy array: {error}") from None
        if not isinstance(array, np.ndarray) or array.ndim != 2 or 0 in array.shape:
            shape = getattr(array, "shape", None)
            raise InputError(f"{self.path} holds an array of shape {shape}, not (rows, dim)")
        if array.dtype.newbyteorder("=") not in FLOAT_DTYPES:
            raise InputError(
                f"{self.path} holds {array.dtype}, not float16, float32 or float64 embeddings"
            )
        self.array = array
        self.rows, self.dim = array.shape

    def describe(self) -> dict[str, dict[str, str]]:
        return {"vectors": {"npy": str(self.path.resolve())}}

    def records(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def vectors(self, records: pa.RecordBatch, first_row: int) -> np.ndarray:
        rows = self.array[first_row : first_row + records.num_rows]
        if len(rows) != records.num_rows:
            raise InputError(f"{self.path} has no row {first_row + len(rows):,}")
        return checked_float32(rows, first_row, str(self.path))


class RowNumbers:
    """The records of a ``.npy`` file indexed without an input: ``{"row": i}`` for its row ``i``.

    Read like a :class:`~fastquant.sources.TextSource` (``path``, ``columns``, ``count_rows``,
    ``batches``).
    """

    format = "npy"

    def __init__(self, vectors: NpyVectors) -> None:
        self.path, self.rows = vectors.path, vectors.rows
        self.schema = pa.schema([(ROW_COLUMN, pa.int64())])

    @property
    def columns(self) -> list[str]:
        return [ROW_COLUMN]

    def count_rows(self) -> int:
        return self.rows

    def batches(
        self, batch_rows: int, start: int = 0, stop: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        stop = self.rows if stop is None else min(stop, self.rows)
        for first in range(start, stop, batch_rows):
            numbers = np.arange(first, min(first + batch_rows, stop), dtype=np.int64)
            yield pa.RecordBatch.from_arrays([pa.array(numbers)], schema=self.schema)


def checked_float32(rows: np.ndarray, first_row: int, where: str) -> np.ndarray:
    """``rows (n, dim)`` as C-contiguous float32, refusing NaN, Inf and values beyond float32;
    the error names the first bad row by its number in the input (``first_row`` + offset)."""
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes Inf, refused below
        vectors = np.ascontiguousarray(rows, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(vectors @ np.ones(vectors.shape[1], np.float32)).all():
            return vectors  # finite sums prove every value finite, in one pass
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        beyond = " or a value beyond float32" if rows.dtype.itemsize > 4 else ""
        raise InputError(f"row {first_row + int(bad[0]):,} of {where} holds NaN or Inf{beyond}")
    return vectors


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _vector_rows(column: pa.Array, dim: int | None, first_row: int, where: str) -> np.ndarray:
    """The float lists of ``column`` as a ``(rows, dim)`` array (``dim`` None: the first's length)."""
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"row {first_row + row:,} of {where} has no vector (null)")
    if pa.types.is_fixed_size_list(column.type):
        dim = column.type.list_size
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        dim = int(lengths[0]) if dim is None else dim
        wrong = np.flatnonzero(lengths != dim)
        if wrong.size:
            row = int(wrong[0])
            raise InputError(
                f"row {first_row + row:,} of {where} has {lengths[row]} values, not {dim} (the "
                "dimension of its first row)"
            )
    values = column.flatten()
    if values.null_count:
        value = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"row {first_row + value // dim:,} of {where} has a missing value")
    return values.to_numpy(zero_copy_only=False).reshape(len(column), dim)
