"""Streaming input files (parquet, CSV, JSONL) and the records folder aligned with store ids."""

from __future__ import annotations

import dataclasses
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastquant.records import RecordLog
from fastquant.sources import InputError, TextRecipe, TextSource
from fastquant.store import StoreCorruptedError
from fastquant.text_store import IndexDescription, TextStore
from store_fuzz import reseal

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
    # A file is one commit: the store's rows end on a file boundary, one commit ahead at most.
    with pytest.raises(StoreCorruptedError, match="holds records 4 to 8, the rows of one commit"):
        reopened.truncate(6)
    with pytest.raises(StoreCorruptedError, match="2 commits of records past the store's 3 rows"):
        reopened.truncate(3)
    assert len(RecordLog(tmp_path)) == 9  # nothing was cut
    assert reopened.truncate(4) == 5  # the last commit, which the store never committed
    assert len(reopened) == 4 and len(RecordLog(tmp_path)) == 4
    assert [r["id"] for r in RecordLog(tmp_path).get(range(4))] == list(range(4))
    with pytest.raises(IndexError, match="record 4 does not exist"):
        reopened.get([4])
    with pytest.raises(ValueError, match="in order: next is 4, got 7"):
        reopened.write(7, batch_of(7, 1))
    with pytest.raises(ValueError, match="columns"):
        reopened.write(4, pa.RecordBatch.from_pylist([{"other": 1}]))


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


def test_csv_values_may_span_lines_across_read_blocks(tmp_path):
    import csv

    file = tmp_path / "multiline.csv"
    with open(file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([i, f'line one {i}\nline, two "{i}"'] for i in range(40_000))
    assert file.stat().st_size > 1 << 20  # spans more than one 1 MiB read block
    source = TextSource(file)
    assert source.count_rows() == 40_000
    texts = [
        t
        for b in source.batches(4096)
        for t in TextRecipe(source.columns, text_column="text").texts(b)
    ]
    assert texts[39_999] == 'line one 39999\nline, two "39999"'


def test_jsonl_values_are_kept_as_written(tmp_path):
    lines = [{"text": "a", "date": "2020-01-02", "n": 1}, {"text": "b", "n": 1.5, "note": None}]
    lines += [{"text": f"t{i}", "n": i} for i in range(5000)]
    lines.append({"text": "late", "extra": {"nested": [1, 2]}})  # a key first seen at the end
    file = tmp_path / "data.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    source = TextSource(file)
    assert source.columns == ["text", "date", "n", "note", "extra"]
    assert source.count_rows() == len(lines)
    rows = [r for b in source.batches(1000) for r in b.to_pylist()]
    assert rows[0] == {"text": "a", "date": "2020-01-02", "n": "1", "note": None, "extra": None}
    assert rows[1]["n"] == "1.5" and rows[-1]["extra"] == '{"nested": [1, 2]}'
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match="line 2 is not a JSON object"):
        TextSource(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        TextSource(tmp_path / "broken.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"a": "ok"}\r\n{"a": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"latin1.jsonl line 2 is not UTF-8 text: invalid"):
        TextSource(tmp_path / "latin1.jsonl")  # issue 17: named neither the file nor the line
    (tmp_path / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"a": "x"}\r\n{"a": "y"}\r\n')
    assert [r for b in TextSource(tmp_path / "bom.jsonl").batches(5) for r in b.to_pylist()] == [
        {"a": "x"},
        {"a": "y"},
    ]


def test_repeated_column_names_are_refused(tmp_path):
    (tmp_path / "dup.csv").write_text("a,a,text\n1,2,x\n")
    with pytest.raises(InputError, match="repeats the column name\\(s\\) 'a'"):
        TextSource(tmp_path / "dup.csv")


def test_column_names_are_taken_whole(tmp_path):
    rows = [{"user.name": "ann", "{x}": "braced", "0": "zero", "list[1]": "idx"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "odd.parquet")
    source = TextSource(tmp_path / "odd.parquet")
    batch = next(source.batches(10))
    assert TextRecipe(source.columns, text_column="{x}").texts(batch) == ["braced"]
    recipe = TextRecipe(source.columns, template="{user.name} / {0} / {list[1]}")
    assert recipe.texts(batch) == ["ann / zero / idx"]
    for template, message in [
        ("{}{0}", "empty"),
        ("{0:d}", "format spec"),
        ("{0!r}", "format spec"),
    ]:
        with pytest.raises(InputError, match=message):
            TextRecipe(source.columns, template=template)


def test_a_damaged_records_file_is_an_error_not_a_crash(tmp_path):
    """Arrow trusts its files: unvalidated, a flipped byte can crash the process."""
    import subprocess
    import sys

    log = RecordLog(tmp_path)
    log.write(0, pa.RecordBatch.from_pylist([{"text": f"value {i}" * 3} for i in range(50)]))
    (part,) = (tmp_path / "records").iterdir()
    original = part.read_bytes()
    script = (
        "import sys\nfrom fastquant.records import RecordLog\nfrom fastquant.store import "
        "StoreCorruptedError\ntry:\n    RecordLog(sys.argv[1]).get(range(50))\n"
        "except StoreCorruptedError:\n    pass\n"
    )
    for offset in range(300, min(len(original), 700), 11):
        damaged = bytearray(original)
        damaged[offset] = 0xFF
        part.write_bytes(bytes(damaged))
        run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True)
        assert run.returncode == 0, (offset, run.returncode, run.stderr.decode()[-300:])


# -- the description of a text index (records/index.json) -----------------------------------------

DESCRIPTION = IndexDescription(
    model="wordllama",
    dim=256,
    text={"template": "{name}: {uses}"},
    columns=("name", "uses", "note"),
    source="/data/input.parquet",
    start_row=100,
)


def test_description_round_trip_keeps_the_file_format(tmp_path):
    text_store = TextStore.open(tmp_path)
    assert text_store.description is None and len(text_store.records) == 0
    text_store.describe(DESCRIPTION)
    file = tmp_path / "records" / "index.json"
    body = json.loads(file.read_text())
    assert body == {
        "model": "wordllama",
        "dim": 256,
        "text": {"template": "{name}: {uses}"},
        "columns": ["name", "uses", "note"],
        "source": "/data/input.parquet",
        "start_row": 100,
        "format_version": 2,
        "json_crc32": reseal(body)["json_crc32"],  # its own checksum, as the manifest's
    }
    assert file.read_text().startswith('{\n "model": "wordllama",\n "dim": 256,')
    assert TextStore.open(tmp_path).description == DESCRIPTION
    older = {"model": "minilm", "dim": 384, "text": {"column": "uses"}, "columns": ["uses"]}
    file.write_text(json.dumps(older))  # written before source and start_row were recorded
    assert TextStore.open(tmp_path).description == IndexDescription(
        "minilm", 384, {"column": "uses"}, ("uses",)
    )


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "Expecting property name"),
        (b'{"\xc3(": 1}', "can't decode"),
        ("[1, 2]", "not a JSON object"),
        ('{"model": "m", "dim": 8, "text": {"column": "a"}}', "'columns' is missing"),
        ('{"model": "m", "dim": "8", "text": {"column": "a"}, "columns": []}', "'dim' is '8'"),
        ('{"model": "m", "dim": 0, "text": {"column": "a"}, "columns": []}', "'dim' is 0"),
        ('{"model": "m", "dim": true, "text": {"column": "a"}, "columns": []}', "'dim' is True"),
        ('{"model": "m", "dim": 8, "text": {"col": "a"}, "columns": []}', "'text' is"),
        ('{"model": "m", "dim": 8, "text": {"column": 1}, "columns": []}', "'text' is"),
        ('{"model": "m", "dim": 8, "text": {"column": "a"}, "columns": [1]}', "'columns' is"),
        (
            '{"model": "m", "dim": 8, "text": {"column": "a"}, "columns": [], "start_row": "0"}',
            "'start_row'",
        ),
    ],
)
def test_a_damaged_description_names_its_file(tmp_path, content, why):
    (tmp_path / "records").mkdir()
    file = tmp_path / "records" / "index.json"
    file.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StoreCorruptedError, match=f"{file} is not a fastquant index description"):
        TextStore.open(tmp_path)
    with pytest.raises(StoreCorruptedError, match=re.escape(why)):
        TextStore.open(tmp_path)
    file.unlink()
    file.mkdir()  # unreadable
    with pytest.raises(StoreCorruptedError, match=f"cannot read {file}"):
        TextStore.open(tmp_path)


def test_text_store_verify_needs_a_description_and_a_record_per_row(tmp_path):
    text_store = TextStore.open(tmp_path)
    assert text_store.verify(5) == 0  # a store of embeddings only: nothing to check
    text_store.records.write(0, batch_of(0, 4))
    with pytest.raises(StoreCorruptedError, match="records/index.json is missing"):
        TextStore.open(tmp_path).verify(4)
    with pytest.raises(StoreCorruptedError, match="has no records/ description"):
        TextStore.open(tmp_path).require_description()
    text_store.describe(DESCRIPTION)
    with pytest.raises(
        StoreCorruptedError, match=r"lists the columns \['name', 'uses', 'note'\], but"
    ):
        TextStore.open(tmp_path).verify(4)
    description = dataclasses.replace(DESCRIPTION, columns=("id", "text"))
    text_store.describe(description)
    assert TextStore.open(tmp_path).verify(4) > 0
    assert TextStore.open(tmp_path).require_description() == description
    with pytest.raises(StoreCorruptedError, match="holds 4 records for 5 rows"):
        TextStore.open(tmp_path).verify(5)
    with pytest.raises(StoreCorruptedError, match="describes 256-d vectors, but the store holds 8"):
        TextStore.open(tmp_path).verify(4, dim=8)


def test_a_description_refuses_other_settings_naming_the_first(tmp_path):
    DESCRIPTION.require_same(tmp_path, model="wordllama", columns=["name", "uses", "note"])
    with pytest.raises(InputError, match="indexed with model 'wordllama', not 'minilm'; use the"):
        DESCRIPTION.require_same(tmp_path, model="minilm")
    with pytest.raises(
        InputError, match=re.escape("indexed with columns ['name', 'uses', 'note'], not ['name']")
    ):
        DESCRIPTION.require_same(tmp_path, text={"template": "{name}: {uses}"}, columns=("name",))
    with pytest.raises(InputError, match="indexed with start_row 100, not 0; re-run with the same"):
        DESCRIPTION.require_same(tmp_path, start_row=0)
