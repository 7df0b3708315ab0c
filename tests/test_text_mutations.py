"""Text stores that change: ``--where`` filters, deletes and compaction under the records, and
re-indexing a changed input by its key column (``index_file(..., key_column=...)``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastquant.cli import main
from fastquant.embed import index_file
from fastquant.sources import InputError
from fastquant.store import CorpusStore, StoreCorruptedError
from fastquant.text_store import TextStore, verify_store
from fastquant.texts import TextIndex
from fastquant.where import matching_ids
from store_fuzz import reseal
from test_embed import HashEncoder

TEMPLATE = "{title}: {body}"
#: Fixed int8 ranges and centre, so that two stores of the same rows score them the same.
RANGES = np.array([[-1.0] * 24, [1.0] * 24], dtype=np.float32)
CENTRE = np.zeros(24, dtype=np.float32)


def docs(rows: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"key": f"k{i}", "title": f"doc {i}", "body": f"body {rng.integers(13)}", "n": i % 7}
        for i in range(rows)
    ]


def write(folder, rows: list[dict], name: str = "docs.parquet"):
    file = folder / name
    pq.write_table(pa.Table.from_pylist(rows), file, row_group_size=17)
    return file


def index(source, store, encoder=None, **options):
    options = {"template": TEMPLATE, "batch_size": 16, "ranges": RANGES, "centre": CENTRE} | options
    return index_file(
        source, store, model=encoder or HashEncoder(), progress=False, commit_seconds=0, **options
    )


def answers(store, queries, k: int) -> list[list[tuple]]:
    """Each query's answers as ``(-score, key, record)``, ids aside, in score then key order."""
    with TextIndex.open(store, encoder=HashEncoder()) as text_index:
        results = text_index.search_vectors(queries, k, rescore_multiplier=100)
    return [
        sorted((-round(h.score, 5), h.record["key"], sorted(h.record.items())) for h in result.hits)
        for result in results
    ]


# -- where -------------------------------------------------------------------------------------


def test_where_search_equals_the_store_filtered_to_the_matching_rows(tmp_path):
    rows = docs(150)
    index(write(tmp_path, rows), tmp_path / "s")
    queries = HashEncoder().encode(["doc 3: body 1", "doc 77: body 5"])
    with TextIndex.open(tmp_path / "s", encoder=HashEncoder()) as text_index:
        text_index.store.delete([0, 7, 14])
        where = "n = 0 OR body IN ('body 1', 'body 2')"
        expected = [
            i for i, r in enumerate(rows) if r["n"] == 0 or r["body"] in ("body 1", "body 2")
        ]
        live = [i for i in expected if i not in (0, 7, 14)]
        np.testing.assert_array_equal(text_index.where_ids(where), live)
        results = text_index.search_vectors(queries, 8, where=where)
        scores, ids = text_index.store.search(queries, 8, filter=live)
        for result, row_scores, row_ids in zip(results, scores, ids):
            assert [h.id for h in result.hits] == row_ids.tolist()
            assert [h.score for h in result.hits] == row_scores.tolist()
            assert all(h.id in live for h in result.hits)
        (none,) = text_index.search_vectors(queries[0], 5, where="n > 100")
        assert none.hits == []


@pytest.mark.parametrize(
    "where, message",
    [
        ("n >", "syntax error"),
        ("colour = 'red'", 'column "colour" not found'),
        ("'abc'", "Could not convert"),
        ("n = 1; COPY (SELECT 1) TO 'leak.csv'", "Parser Error"),
        ("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "Permission Error"),
        ("  ", "where is empty"),
    ],
)
def test_bad_or_harmful_predicates_are_one_line_errors(tmp_path, where, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = pa.table({"n": [1, 2, 3]})
    with pytest.raises(ValueError, match=message) as error:
        matching_ids(records, where)
    assert "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "leak.csv")


def test_a_record_column_named_like_the_id_column_is_kept_apart():
    records = pa.table({"_fastquant_id": [9, 9, 9], "x": [1, 2, 3]})
    np.testing.assert_array_equal(matching_ids(records, "_fastquant_id = 9 AND x > 1"), [1, 2])


# -- the command line --------------------------------------------------------------------------


def test_cli_where_delete_compact_info(tmp_path, capsys):
    index(write(tmp_path, docs(120)), tmp_path / "s")
    store = str(tmp_path / "s")
    assert main(["delete", store, "--where", "n = 3"]) == 0
    assert "deleted 17 rows; " in capsys.readouterr().out
    assert main(["delete", store, "--ids", "0,1,1,3"]) == 0  # 3 has n = 3: already deleted
    assert "deleted 2 rows; " in capsys.readouterr().out
    assert main(["info", store, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert (facts["rows"], facts["deleted"], facts["next id"]) == (101, 19, 120)
    assert main(["info", store]) == 0
    out = capsys.readouterr().out
    assert "rows:        101" in out and "deleted:     19 rows not yet compacted" in out
    assert "next id:     120" in out

    assert main(["compact", store, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 19 deleted rows from ") and "returned)" in out
    assert main(["verify", store]) == 0
    assert "ok: 101 rows" in capsys.readouterr().out
    with TextIndex.open(store, encoder=HashEncoder()) as text_index:
        assert text_index.where_ids("n = 3").size == 0
        assert text_index.records.get([3]) == [docs(120)[3]]  # records outlive their rows


@pytest.mark.parametrize(
    "argv, message",
    [
        (["delete", "{store}"], "say which rows to delete"),
        (["delete", "{store}", "--ids", "1,x"], "--ids takes comma-separated row ids"),
        (["delete", "{store}", "--ids", "500"], "id 500, which no row of this store ever had"),
        (["delete", "{store}", "--where", "nope = 1"], 'column "nope" not found'),
        (["delete", "{plain}", "--where", "n = 1"], "--where filters by the records"),
        (["search", "{store}", "--query-vector", "{q}", "--where", "n >"], "syntax error"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    index(write(tmp_path, docs(40)), tmp_path / "s")
    with CorpusStore.create(tmp_path / "plain", 24, ranges=RANGES) as plain:
        plain.append(HashEncoder().encode(["a", "b"]))
    np.save(tmp_path / "q.npy", HashEncoder().encode(["a"]))
    paths = {"store": str(tmp_path / "s"), "plain": str(tmp_path / "plain")}
    paths["q"] = str(tmp_path / "q.npy")
    code = main([part.format(**paths) for part in argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1


def test_delete_by_ids_works_on_a_plain_store(tmp_path, capsys):
    with CorpusStore.create(tmp_path / "plain", 24, ranges=RANGES) as plain:
        plain.append(HashEncoder().encode(["a", "b", "c"]))
    assert main(["delete", str(tmp_path / "plain"), "--ids", "1"]) == 0
    assert "deleted 1 rows; " in capsys.readouterr().out
    assert main(["compact", str(tmp_path / "plain"), "--no-progress"]) == 0
    with CorpusStore.open(tmp_path / "plain") as plain:
        assert len(plain) == 2 and plain.live_ids().tolist() == [0, 2]


def test_records_are_counted_against_next_id_after_deletes(tmp_path):
    source = write(tmp_path, docs(100))
    with pytest.raises(KeyboardInterrupt):
        index(source, tmp_path / "s", HashEncoder(fail_after=48), calibration_rows=16)
    with CorpusStore.open(tmp_path / "s") as store:
        store.delete([1, 2, 3])
        store.compact()
    report = index(source, tmp_path / "s")  # a plain resume continues after the last id
    assert (report.resumed_from, report.rows_added, report.rows_total) == (48, 52, 97)
    assert verify_store(tmp_path / "s")[0] == 97
    with TextIndex.open(tmp_path / "s", encoder=HashEncoder()) as text_index:
        assert len(text_index) == 97 and text_index.records.get([99]) == [docs(100)[99]]


# -- re-indexing by key ------------------------------------------------------------------------


def changed(rows: list[dict], seed: int) -> list[dict]:
    """``rows`` with some texts changed, some rows dropped, some added, and shuffled."""
    rng = np.random.default_rng(seed)
    out = []
    for row in rows:
        draw = rng.random()
        if draw < 0.1:
            continue
        if draw < 0.25:
            row = row | {"body": row["body"] + " v2"}
        elif draw < 0.3:
            row = row | {"n": row["n"] + 100}  # not in the text, but in the record
        out.append(row)
    out += [
        {"key": f"new{seed}-{i}", "title": f"new {i}", "body": "fresh", "n": 0} for i in range(9)
    ]
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_a_reindexed_store_answers_like_a_fresh_index_of_the_new_input(tmp_path, seed):
    first = docs(90, seed)
    index(write(tmp_path, first), tmp_path / "s", key_column="key")
    second = changed(first, seed)
    encoder = HashEncoder()
    report = index(
        write(tmp_path, second, "v2.parquet"), tmp_path / "s", encoder, delete_missing=True
    )
    old = {row["key"]: row for row in first}
    texts_changed = [r for r in second if r["key"] in old and r != old[r["key"]]]
    assert any(r["body"] == old[r["key"]]["body"] for r in texts_changed)  # some only in n
    added = [r for r in second if r["key"] not in old]
    assert len(encoder.texts) == report.rows_added == len(texts_changed) + len(added)
    assert report.rows_deleted == len(texts_changed) + len(old.keys() - {r["key"] for r in second})
    assert report.rows_total == len(second)
    index(write(tmp_path, second, "fresh.parquet"), tmp_path / "fresh", key_column="key")
    queries = HashEncoder().encode(["doc 3: body 1", "new 2: fresh", "doc 40: body 7 v2"])
    assert answers(tmp_path / "s", queries, len(second)) == answers(
        tmp_path / "fresh", queries, len(second)
    )
    verify_store(tmp_path / "s")
    again = HashEncoder()  # the key column is remembered; nothing left to do
    report = index(write(tmp_path, second, "v2.parquet"), tmp_path / "s", again)
    assert again.texts == [] and report.rows_deleted == 0 and report.rows_unchanged == len(second)


def test_without_delete_missing_vanished_keys_stay(tmp_path):
    rows = docs(30)
    index(write(tmp_path, rows), tmp_path / "s", key_column="key")
    report = index(write(tmp_path, rows[5:]), tmp_path / "s", key_column="key")
    assert report.rows_added == 0 and report.rows_deleted == 0 and report.rows_total == 30
    report = index(write(tmp_path, rows[5:]), tmp_path / "s", delete_missing=True)
    assert report.rows_deleted == 5 and report.rows_total == 25


@pytest.mark.parametrize("fail", ["append", "delete"])
def test_a_run_killed_at_any_write_leaves_a_store_that_converges(tmp_path, monkeypatch, fail):
    first = docs(60)
    index(write(tmp_path, first), tmp_path / "s", key_column="key")
    second = changed(first, 7)
    source = write(tmp_path, second, "v2.parquet")
    original = getattr(CorpusStore, fail)

    def killed(self, *args, **kwargs):
        if fail == "append":
            original(self, *args, **kwargs)  # one commit gets through, the next is cut short
            monkeypatch.setattr(CorpusStore, fail, interrupted)
        raise KeyboardInterrupt

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(CorpusStore, fail, killed)
    with pytest.raises(KeyboardInterrupt):
        index(source, tmp_path / "s", batch_size=4, delete_missing=True)
    monkeypatch.setattr(CorpusStore, fail, original)
    with CorpusStore.open(tmp_path / "s") as store:  # new rows in, old ones not yet deleted
        assert store.next_id > 60 and len(store) == store.next_id
    verify_store(tmp_path / "s")
    with TextIndex.open(tmp_path / "s", encoder=HashEncoder()) as text_index:
        text_index.warm_up(text=False)  # it opens and searches
    index(source, tmp_path / "s", delete_missing=True)
    verify_store(tmp_path / "s")
    index(source, tmp_path / "fresh", key_column="key")
    queries = HashEncoder().encode(["doc 3: body 1", "new 2: fresh"])
    assert answers(tmp_path / "s", queries, 80) == answers(tmp_path / "fresh", queries, 80)


def test_duplicate_and_missing_keys_are_refused_before_anything_is_written(tmp_path):
    rows = docs(20)
    dup = rows + [rows[3] | {"body": "x"}, rows[4], rows[4], rows[5]]
    with pytest.raises(
        InputError, match=r"3 keys of column 'key' more than once \('k3', 'k4', 'k5'\)"
    ):
        index(write(tmp_path, dup), tmp_path / "s", key_column="key")
    assert not (tmp_path / "s").exists()
    index(write(tmp_path, rows), tmp_path / "s", key_column="key")
    with pytest.raises(InputError, match="row 2 of .* has no value in the key column 'key'"):
        index(write(tmp_path, rows[:2] + [rows[2] | {"key": None}]), tmp_path / "s")
    with CorpusStore.open(tmp_path / "s") as store:
        assert store.next_id == 20 and len(store) == 20


def test_key_column_rules(tmp_path):
    rows = docs(20)
    source = write(tmp_path, rows)
    index(source, tmp_path / "plain")
    description = TextStore.open(tmp_path / "plain").description
    assert description.key_column is None
    assert json.loads((tmp_path / "plain/records/index.json").read_text())["format_version"] == 2
    with pytest.raises(ValueError, match="delete_missing needs a key column"):
        index(source, tmp_path / "plain", delete_missing=True)
    report = index(source, tmp_path / "plain", key_column="key")  # a plain store takes a key
    assert report.rows_added == 0 and report.rows_unchanged == 20
    assert TextStore.open(tmp_path / "plain").description.key_column == "key"
    assert json.loads((tmp_path / "plain/records/index.json").read_text())["format_version"] == 3
    file = tmp_path / "plain/records/index.json"
    keyed = file.read_text()
    file.write_text(json.dumps(reseal(json.loads(keyed) | {"format_version": 2})))
    with pytest.raises(StoreCorruptedError, match="unknown field 'key_column'"):
        verify_store(tmp_path / "plain")  # a key column needs format 3
    file.write_text(keyed)
    with pytest.raises(InputError, match="kept up to date by key column 'key', not 'title'"):
        index(source, tmp_path / "plain", key_column="title")
    with pytest.raises(InputError, match="key column 'nope' is not a column"):
        index(source, tmp_path / "other", key_column="nope")
    with pytest.raises(ValueError, match="not precomputed embeddings"):
        index_file(source, tmp_path / "e", embeddings=tmp_path / "x.npy", key_column="key")
    with pytest.raises(ValueError, match="not a row range"):
        index(source, tmp_path / "r", key_column="key", rows=(0, 5))


def test_cli_index_by_key(tmp_path, capsys):
    first = docs(50)
    source = write(tmp_path, first)
    argv = ["index", str(source), "--store", str(tmp_path / "s"), "--model", "wordllama"]
    argv += ["--template", TEMPLATE, "--no-progress", "--key-column", "key"]
    assert main(argv) == 0
    capsys.readouterr()
    second = [r | {"body": "new text"} if r["key"] == "k4" else r for r in first[:-2]]
    write(tmp_path, second)
    assert main([*argv[:-2], "--delete-missing"]) == 0
    captured = capsys.readouterr()
    assert "indexed 1 rows" in captured.out and "holds 48 rows" in captured.out
    assert "by key: 47 rows unchanged, 3 deleted" in captured.out
    assert (
        "by key 'key': 0 new rows, 1 changed, 47 unchanged, 2 gone from the input; "
        "3 rows to delete" in captured.err
    )
    dup = write(tmp_path, first + first[:1], "dup.parquet")
    assert main([*argv[:1], str(dup), *argv[2:]]) == 1
    assert "more than once ('k0')" in capsys.readouterr().err


REINDEX_IN_A_CHILD = """
    import sys

    sys.path.insert(0, sys.argv[3])
    from fastquant.embed import index_file
    from test_embed import HashEncoder
    from test_text_mutations import CENTRE, RANGES, TEMPLATE

    print("ready", flush=True)
    index_file(
        sys.argv[1], sys.argv[2], template=TEMPLATE, model=HashEncoder(), batch_size=2,
        ranges=RANGES, centre=CENTRE, commit_seconds=0, delete_missing=True,
        progress=lambda done, total: print(f"{done} {total}", flush=True),
    )
    print("finished", flush=True)
"""


@pytest.mark.parametrize("kill_after", [1, 4, "last"])
@pytest.mark.parametrize("delay_s", [0.0, 0.004, 0.03])
def test_sigkill_during_a_reindex_leaves_a_store_that_converges(tmp_path, kill_after, delay_s):
    first = docs(60)
    index(write(tmp_path, first), tmp_path / "s", key_column="key")
    source = write(tmp_path, changed(first, 7), "v2.parquet")
    code = textwrap.dedent(REINDEX_IN_A_CHILD)
    here = os.path.dirname(__file__)
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(source), str(tmp_path / "s"), here],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, child.kill)
    watchdog.start()
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        seen = 0
        while line := child.stdout.readline().strip():
            seen += 1
            done, total = map(int, line.split())
            if seen == kill_after or done == total:
                break
        threading.Event().wait(delay_s)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        watchdog.cancel()
    verify_store(tmp_path / "s")
    with TextIndex.open(tmp_path / "s", encoder=HashEncoder()) as text_index:
        text_index.warm_up(text=False)
    index(source, tmp_path / "s", delete_missing=True)
    verify_store(tmp_path / "s")
    index(source, tmp_path / "fresh", key_column="key")
    queries = HashEncoder().encode(["doc 3: body 1", "new 2: fresh"])
    assert answers(tmp_path / "s", queries, 80) == answers(tmp_path / "fresh", queries, 80)
