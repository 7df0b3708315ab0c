"""Streaming input files (parquet, CSV, JSONL) and the records folder aligned with store ids."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastquant.records import RecordLog
from fastquant.sources import InputError, TextRecipe, TextSource
from fastquant.store import StoreCorruptedError

ROWS = [
    {"name": f"item {i}", "uses": f"use {i % 7}", "note": None if i % 5 == 0 else f"n{i}"}
    for i in range(103)
]


def write_input(folder, fmt: str, rows=ROWS):
    file = folder / f"input.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), file, row_group_size=10)
    elif fmt == "csv":
        lines = ["name,uses,note"] + [
            f'"{r["name"]}","{r["uses"]}",{r["note"] or ""}' for r in rows
        ]
        file.write_text("\n".join(lines) + "\n")
    else:
        file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return file


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize(("batch_rows", "start", "stop"), [(1, 0, None), (16, 5, 70), (1000, 0, 3)])
def test_batches_cover_the_row_range_in_order(tmp_path, fmt, batch_rows, start, stop):
    source = TextSource(write_input(tmp_path, fmt))
    assert source.columns == ["name", "uses", "note"]
    assert source.count_rows() == len(ROWS)
    batches = list(source.batches(batch_rows, start, stop))
    assert all(b.num_rows == batch_rows for b in batches[:-1])
    names = [name for b in batches for name in b.column("name").to_pylist()]
    assert names == [r["name"] for r in ROWS[start:stop]]


def test_recipe_from_template_and_column(tmp_path):
    source = TextSource(write_input(tmp_path, "parquet"))
    batch = next(source.batches(6))
    template = TextRecipe(source.columns, template="{name}: {uses} ({note})")
    assert template.texts(batch)[:2] == ["item 0: use 0 ()", "item 1: use 1 (n1)"]
    assert template.describe() == {"template": "{name}: {uses} ({note})"}
    column = TextRecipe(source.columns, text_column="uses")
    assert column.texts(batch)[:2] == ["use 0", "use 1"]
    assert column.describe() == {"column": "uses"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"text_column": "nope"}, "unknown column 'nope'; the input has: 'name', 'uses', 'note'"),
        ({"template": "{name} {x} {y}"}, "unknown columns 'x', 'y'"),
        ({"template": "no fields"}, "names no column"),
        ({"template": "{name"}, "bad template"),
        ({}, "either a text column or a template"),
        ({"text_column": "name", "template": "{name}"}, "either a text column or a template"),
    ],
)
def test_bad_recipes_name_the_problem(options, message):
    with pytest.raises(InputError, match=message):
        TextRecipe(["name", "uses", "note"], **options)


def test_bad_input_files_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        TextSource(tmp_path / "missing.parquet")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(InputError, match="unknown format '.xlsx'"):
        TextSource(tmp_path / "data.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="cannot read .*bad.parquet as parquet"):
        TextSource(tmp_path / "bad.parquet")


def batch_of(first: int, rows: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"id": i, "text": f"t{i}"} for i in range(first, first + rows)]
    )


def test_records_write_get_truncate_verify(tmp_path):
    log = RecordLog(tmp_path)
    assert len(log) == 0 and log.schema is None
    for first, rows in [(0, 3), (3, 1), (4, 5)]:
        log.write(first, batch_of(first, rows))
    assert len(log) == 9
    assert [r["id"] for r in log.get([8, 0, 3, 4])] == [8, 0, 3, 4]
    assert log.verify() > 0
    reopened = RecordLog(tmp_path)
    assert len(reopened) == 9 and reopened.get([5]) == [{"id": 5, "text": "t5"}]
    reopened.truncate(6)  # cuts the last part in two
    assert len(reopened) == 6 and len(RecordLog(tmp_path)) == 6
    assert [r["id"] for r in RecordLog(tmp_path).get(range(6))] == list(range(6))
    with pytest.raises(IndexError, match="record 6 does not exist"):
        reopened.get([6])
    with pytest.raises(ValueError, match="in order: next is 6, got 7"):
        reopened.write(7, batch_of(7, 1))
    with pytest.raises(ValueError, match="columns"):
        reopened.write(6, pa.RecordBatch.from_pylist([{"other": 1}]))


def test_records_damage_is_reported_with_the_file(tmp_path):
    log = RecordLog(tmp_path)
    log.write(0, batch_of(0, 4))
    log.write(4, batch_of(4, 4))
    first, second = sorted((tmp_path / "records").iterdir())
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match=second.name):
        RecordLog(tmp_path).verify()
    first.unlink()
    with pytest.raises(StoreCorruptedError, match="records 0 to 3 are missing"):
        RecordLog(tmp_path)
