"""Precomputed embeddings in (issue 14, point 1): a parquet column or a ``.npy`` file indexed with
the stages of text indexing, searched with query vectors or a model of the same dimension."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastquant.cli import main
from fastquant.embed import index_file
from fastquant.sources import InputError
from fastquant.store import CorpusStore
from fastquant.text_store import TextStore, verify_store
from fastquant.texts import TextIndex
from test_embed import HashEncoder

ROWS, DIM, BATCH, CALIBRATION = 300, 24, 64, 100
OPTIONS = {"batch_size": BATCH, "calibration_rows": CALIBRATION, "commit_seconds": 0}
OPTIONS |= {"progress": False, "chunk_rows": 128}


def vectors(rows: int = ROWS, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def embedding_column(array: np.ndarray, dtype: str, fixed: bool) -> pa.Array:
    values = pa.array(array.astype(dtype).ravel())
    if fixed:
        return pa.FixedSizeListArray.from_arrays(values, array.shape[1])
    return pa.ListArray.from_arrays(np.arange(0, array.size + 1, array.shape[1]), values)


def write_input(folder, array: np.ndarray, dtype: str = "float32", fixed: bool = True):
    file = folder / "input.parquet"
    rows = len(array)
    table = pa.table(
        {
            "id": np.arange(rows),
            "title": [f"doc {i}" for i in range(rows)],
            "emb": embedding_column(array, dtype, fixed),
        }
    )
    pq.write_table(table, file, row_group_size=50)
    return file


def reference_search(folder, array: np.ndarray, queries: np.ndarray):
    """``CorpusStore.append`` of the same float32 arrays, calibrated on the same first rows."""
    first = -(-CALIBRATION // BATCH) * BATCH  # the calibration rows rounded up to whole batches
    store = CorpusStore.create(
        folder / "reference", DIM, calibration_embeddings=array[:first], chunk_rows=128
    )
    store.append(array)
    return store.search(queries, 10)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("fixed", [True, False], ids=["fixed-size list", "list"])
def test_an_embedding_column_indexes_as_append_does(tmp_path, dtype, fixed):
    array = vectors()
    source = write_input(tmp_path, array, dtype, fixed)
    report = index_file(source, tmp_path / "store", embedding_column="emb", **OPTIONS)
    assert (report.rows_added, report.model) == (ROWS, None)
    exact = array.astype(dtype).astype(np.float32)  # what the column holds, as float32
    queries = vectors(5, seed=1)
    expected = reference_search(tmp_path, exact, queries)
    with TextIndex.open(tmp_path / "store") as text_index:
        results = text_index.search_vectors(queries, 10)
        assert [[hit.id for hit in r.hits] for r in results] == expected[1].tolist()
        assert [[hit.score for hit in r.hits] for r in results] == expected[0].tolist()
        assert results[0].hits[0].record == {
            "id": int(expected[1][0][0]),
            "title": f"doc {expected[1][0][0]}",
        }
    description = TextStore.open(tmp_path / "store").description
    assert description.vectors == {"column": "emb"} and description.model is None
    assert description.columns == ("id", "title") and description.text is None
    assert verify_store(tmp_path / "store")[0] == ROWS


@pytest.mark.parametrize("with_input", [True, False], ids=["records from the input", "row numbers"])
def test_a_npy_file_indexes_as_append_does(tmp_path, with_input):
    array = vectors()
    np.save(tmp_path / "emb.npy", array)
    source = write_input(tmp_path, vectors(seed=9)) if with_input else None  # its own emb ignored
    index_file(source, tmp_path / "store", embeddings=tmp_path / "emb.npy", **OPTIONS)
    queries = vectors(5, seed=1)
    expected = reference_search(tmp_path, array, queries)
    with TextIndex.open(tmp_path / "store") as text_index:
        results = text_index.search_vectors(queries, 10)
        assert [[hit.id for hit in r.hits] for r in results] == expected[1].tolist()
        top = int(expected[1][0][0])
        record = results[0].hits[0].record
        assert record["id"] == top if with_input else record == {"row": top}
    assert verify_store(tmp_path / "store")[0] == ROWS


def test_query_vectors_are_searched_with_the_chosen_scan(tmp_path, capsys):
    np.save(tmp_path / "emb.npy", vectors())
    np.save(tmp_path / "q.npy", vectors(1, seed=1)[0])
    store = tmp_path / "store"
    index_file(None, store, embeddings=tmp_path / "emb.npy", **OPTIONS)
    query = ["search", str(store), "--query-vector", str(tmp_path / "q.npy"), "-k", "5", "--json"]
    options = {"k": 5, "rescore_multiplier": 1}  # few candidates: the scans disagree
    found = {}
    with TextIndex.open(store) as text_index:
        for scan in ("asymmetric", "asymmetric-exact", "hamming", "hamming+asymmetric"):
            (result,) = text_index.search_vectors(vectors(1, seed=1), scan=scan, **options)
            found[scan] = [hit.id for hit in result.hits]
            expected = text_index.store.search(vectors(1, seed=1), scan=scan, **options)[1]
            assert found[scan] == expected[0].tolist()
            assert main([*query, "--scan", scan, "--rescore-multiplier", "1"]) == 0
            (printed,) = json.loads(capsys.readouterr().out)
            assert [hit["id"] for hit in printed["hits"]] == found[scan]
    assert found["asymmetric"] != found["hamming"]


def test_an_interrupted_run_resumes_without_duplicates(tmp_path, monkeypatch):
    from fastquant import precomputed

    array = vectors()
    source = write_input(tmp_path, array)
    original = precomputed.ColumnVectors.vectors
    calls = []

    def interrupted(self, records, first_row):
        calls.append(first_row)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, records, first_row)

    monkeypatch.setattr(precomputed.ColumnVectors, "vectors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        index_file(source, tmp_path / "store", embedding_column="emb", **OPTIONS)
    monkeypatch.setattr(precomputed.ColumnVectors, "vectors", original)
    assert len(CorpusStore.open(tmp_path / "store")) == 3 * BATCH
    report = index_file(source, tmp_path / "store", embedding_column="emb", **OPTIONS)
    assert (report.resumed_from, report.rows_total) == (3 * BATCH, ROWS)
    queries = vectors(5, seed=1)
    with TextIndex.open(tmp_path / "store") as text_index:
        found = [[hit.id for hit in r.hits] for r in text_index.search_vectors(queries, 10)]
    assert found == reference_search(tmp_path, array, queries)[1].tolist()
    with pytest.raises(InputError, match="was indexed from precomputed embeddings .column 'emb'"):
        index_file(source, tmp_path / "store", text_column="title", model=HashEncoder(), **OPTIONS)
    np.save(tmp_path / "emb.npy", array)
    with pytest.raises(InputError, match=r"indexed with vectors \{'column': 'emb'\}, not"):
        index_file(source, tmp_path / "store", embeddings=tmp_path / "emb.npy", **OPTIONS)


def _committed(store) -> int:
    try:
        return len(CorpusStore.open(store))
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda a: a.__setitem__((150, 3), np.nan), r"row 150 of column 'emb' of .* holds NaN"),
        (
            lambda a: a.__setitem__((200, 0), np.inf),
            r"row 200 of column 'emb' of .* holds NaN or Inf",
        ),
    ],
)
def test_bad_vectors_name_their_row_and_commit_nothing_of_their_batch(tmp_path, damage, message):
    array = vectors()
    damage(array)
    source = write_input(tmp_path, array)
    with pytest.raises(InputError, match=message):
        index_file(source, tmp_path / "store", embedding_column="emb", **OPTIONS)
    bad_row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
    committed = _committed(tmp_path / "store")
    assert committed <= bad_row // BATCH * BATCH  # nothing of the bad batch
    if committed:
        assert len(TextStore.open(tmp_path / "store").records) == committed


def test_ragged_missing_and_mistyped_columns_name_the_row(tmp_path):
    lists = [list(row) for row in vectors(ROWS).astype(float)]
    for rows, message in [
        ({77: lists[77][:-1]}, r"row 77 of column 'emb' of .* has 23 values, not 24"),
        ({5: None}, r"row 5 of column 'emb' of .* has no vector \(null\)"),
        ({130: [*lists[130][:3], None, *lists[130][4:]]}, r"row 130 of .* has a missing value"),
        ({250: [1e39] * DIM}, r"row 250 of .* holds NaN or Inf or a value beyond float32"),
    ]:
        values = [rows.get(i, row) for i, row in enumerate(lists)]
        file = tmp_path / "ragged.parquet"
        pq.write_table(pa.table({"emb": pa.array(values, pa.list_(pa.float64()))}), file)
        store = tmp_path / f"store-{next(iter(rows))}"
        with pytest.raises(InputError, match=message):
            index_file(file, store, embedding_column="emb", **OPTIONS)
        assert _committed(store) <= next(iter(rows)) // BATCH * BATCH


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("strings", r"column 'title' of .* holds string, not lists of floats"),
        ("integers", r"holds list<element: int64>, not lists of floats"),
        ("csv", r"an embedding column is read from parquet; .*input.csv is csv"),
        ("unknown", r"unknown column 'nope'"),
        ("npy 1-D", r"emb.npy holds an array of shape \(300,\), not \(rows, dim\)"),
        ("npy ints", r"emb.npy holds int64, not float16, float32 or float64"),
        ("npy objects", r"cannot read .*emb.npy as a .npy array"),
        ("npy rows", r"emb.npy has 299 rows but .*input.parquet has 300"),
        ("other dim", r"holds 24-d embeddings but precomputed embeddings .* makes 16-d ones"),
        ("model", r"model embeds text; precomputed embeddings need none"),
    ],
)
def test_bad_inputs_are_one_clear_error_before_anything_is_written(tmp_path, setup, message):
    array = vectors()
    source = write_input(tmp_path, array)
    options = {"embedding_column": "emb"}
    if setup == "strings":
        options = {"embedding_column": "title"}
    elif setup == "integers":
        pq.write_table(pa.table({"emb": [[1, 2]] * 3}), source)
    elif setup == "csv":
        source = tmp_path / "input.csv"
        source.write_text("emb\n1\n")
    elif setup == "unknown":
        options = {"embedding_column": "nope"}
    elif setup.startswith("npy"):
        npy = {"npy 1-D": array[:, 0], "npy ints": np.zeros((3, 2), np.int64)}.get(setup)
        npy = np.array([{"a": 1}], dtype=object) if setup == "npy objects" else npy
        np.save(tmp_path / "emb.npy", array[:-1] if npy is None else npy)
        options = {"embeddings": tmp_path / "emb.npy"}
    elif setup == "other dim":
        index_file(source, tmp_path / "store", embedding_column="emb", **OPTIONS)
        (tmp_path / "other").mkdir()
        source = write_input(tmp_path / "other", vectors(dim=16))
    elif setup == "model":
        options["model"] = "wordllama"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises((InputError, ValueError), match=message):
        index_file(source, tmp_path / "store", **options, **OPTIONS)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_command_line_indexes_and_searches_precomputed_embeddings(tmp_path, capsys):
    from fastquant.encoders import load_encoder

    titles = ["aspirin for headache", "antibiotic for infection", "cream for dry skin"] * 20
    encoder = load_encoder("wordllama")
    array = encoder.encode(titles)
    table = pa.table({"title": titles, "emb": embedding_column(array, "float16", fixed=False)})
    pq.write_table(table, tmp_path / "input.parquet")
    store = str(tmp_path / "store")
    index = ["index", str(tmp_path / "input.parquet"), "--store", store, "--no-progress"]
    assert main([*index, "--embedding-column", "emb"]) == 0
    assert "indexed 60 rows" in capsys.readouterr().out
    assert main(["search", store, "an infection"]) == 1
    assert (
        "holds precomputed embeddings (column 'emb'): embed text queries with a model that "
        "makes 256-d vectors (--model)" in capsys.readouterr().err
    )
    assert main(["search", store, "an infection", "--model", "wordllama", "-k", "1", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["hits"][0]["record"] == {"title": "antibiotic for infection"}
    np.save(tmp_path / "q.npy", array[2])
    assert main(["search", store, "--query-vector", str(tmp_path / "q.npy"), "-k", "1"]) == 0
    assert "cream for dry skin" in capsys.readouterr().out
    np.save(tmp_path / "q.npy", array[:, :10])
    assert main(["search", store, "--query-vector", str(tmp_path / "q.npy")]) == 1
    assert "q.npy holds float32 of shape (60, 10); the store holds 256-d" in capsys.readouterr().err
    assert main(["search", store]) == 1
    assert "give query texts, or --query-vector FILE.npy" in capsys.readouterr().err
    assert main(["info", store]) == 0
    assert "vectors:     precomputed embeddings (column 'emb')" in capsys.readouterr().out
    assert main(["verify", store]) == 0
    np.save(tmp_path / "emb.npy", array)
    assert main(["index", "--embeddings", str(tmp_path / "emb.npy"), "--store", f"{store}2"]) == 0
    capsys.readouterr()
    assert main(["index", "--store", f"{store}3", "--text-column", "title"]) == 1
    assert "give the INPUT file" in capsys.readouterr().err
    assert main(["serve", store]) == 1
    assert "the search page searches text fields" in capsys.readouterr().err
