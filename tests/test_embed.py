"""Text in, store out: ``index_file`` streams, calibrates, resumes and refuses mismatched runs."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastquant.embed import index_file
from fastquant.encoders import ModelNotAvailableError, load_encoder
from fastquant.pipeline import (
    CommitPolicy,
    EmbeddedBatch,
    Progress,
    calibration_sample,
    first_batches,
)
from fastquant.sources import InputError
from fastquant.store import CorpusStore, StoreCorruptedError
from fastquant.text_store import TextStore
from fastquant.texts import TextIndex


class HashEncoder:
    """Deterministic 24-d unit vectors from each text's CRC; counts the texts it embedded."""

    name, dim = "hash-24", 24

    def __init__(self, fail_after: int | None = None) -> None:
        self.texts: list[str] = []
        self.fail_after = fail_after

    def encode(self, texts):
        if self.fail_after is not None and len(self.texts) >= self.fail_after:
            raise KeyboardInterrupt
        self.texts += texts
        vectors = np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(24) for t in texts]
        ).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_parquet(folder, rows: int = 150):
    file = folder / "docs.parquet"
    table = pa.table(
        {
            "title": [f"doc {i}" for i in range(rows)],
            "body": [f"body {i % 13}" for i in range(rows)],
        }
    )
    pq.write_table(table, file, row_group_size=17)
    return file


def test_index_then_search_returns_the_source_records(tmp_path):
    source = write_parquet(tmp_path)
    notices = []
    report = index_file(
        source,
        tmp_path / "store",
        template="{title}: {body}",
        model=HashEncoder(),
        batch_size=32,
        calibration_rows=40,
        progress=False,
        log=notices.append,
    )
    assert (report.rows_added, report.rows_total, report.resumed_from) == (150, 150, 0)
    assert notices == ["int8 ranges: calibrated on the first 64 rows"]
    assert report.seconds_embedding > 0 and report.seconds_storing > 0
    description = TextStore.open(tmp_path / "store").description
    assert description.model == "hash-24" and description.text == {"template": "{title}: {body}"}
    with TextIndex.open(tmp_path / "store", encoder=HashEncoder()) as text_index:
        (result,) = text_index.search("doc 42: body 3", k=3)
        assert result.hits[0].record == {"title": "doc 42", "body": "body 3"}
        assert result.hits[0].id == 42 and result.hits[0].rank == 1
        expected_scores, expected_ids = text_index.store.search(
            HashEncoder().encode(["doc 42: body 3"]), 3
        )
        assert [h.id for h in result.hits] == expected_ids[0].tolist()
        assert [h.score for h in result.hits] == pytest.approx(expected_scores[0].tolist())


def test_fast_models_commit_batches_together(tmp_path):
    seen = []
    index_file(
        write_parquet(tmp_path, 150),
        tmp_path / "store",
        text_column="title",
        model=HashEncoder(),
        batch_size=32,
        calibration_rows=40,
        commit_seconds=float("inf"),  # no commit is due by time: only the last one, of every row
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(150, 150)]


def test_progress_callback_sees_every_commit(tmp_path):
    seen = []
    index_file(
        write_parquet(tmp_path, 70),
        tmp_path / "store",
        text_column="title",
        model=HashEncoder(),
        batch_size=32,
        calibration_rows=2,
        commit_seconds=0,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(32, 70), (64, 70), (70, 70)]


def test_interrupted_index_resumes_without_duplicates(tmp_path):
    source = write_parquet(tmp_path)
    options = {"template": "{title}: {body}", "batch_size": 16, "calibration_rows": 20}
    options["commit_seconds"] = 0
    with pytest.raises(KeyboardInterrupt):
        index_file(
            source, tmp_path / "cut", model=HashEncoder(fail_after=80), progress=False, **options
        )
    with CorpusStore.open(tmp_path / "cut") as store:
        assert len(store) == 80
    second = HashEncoder()
    notices = []
    report = index_file(
        source, tmp_path / "cut", model=second, progress=False, log=notices.append, **options
    )
    assert report.resumed_from == 80 and report.rows_added == 70
    assert second.texts[0] == "doc 80: body 2"  # only what was missing was embedded
    assert notices == ["resuming: 80 of 150 rows are already in " + str(tmp_path / "cut")]
    index_file(source, tmp_path / "whole", model=HashEncoder(), progress=False, **options)
    cut, whole = (
        TextIndex.open(tmp_path / "cut", encoder=HashEncoder()),
        TextIndex.open(tmp_path / "whole", encoder=HashEncoder()),
    )
    with cut, whole:
        assert cut.records.get(range(150)) == whole.records.get(range(150))
        queries = HashEncoder().encode(["doc 1: body 1", "doc 149: body 6"])
        for a, b in zip(cut.store.search(queries, 5), whole.store.search(queries, 5)):
            np.testing.assert_array_equal(a, b)
    again = index_file(source, tmp_path / "whole", model=HashEncoder(), progress=False, **options)
    assert again.rows_added == 0 and again.rows_total == 150


def test_records_written_before_a_failed_append_are_dropped_on_resume(tmp_path, monkeypatch):
    source = write_parquet(tmp_path, 40)
    options = {"text_column": "title", "batch_size": 10, "calibration_rows": 10, "progress": False}
    options["commit_seconds"] = 0
    original = CorpusStore.append
    calls = []

    def failing_append(self, embeddings):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, embeddings)

    monkeypatch.setattr(CorpusStore, "append", failing_append)
    with pytest.raises(OSError, match="disk full"):
        index_file(source, tmp_path / "store", model=HashEncoder(), **options)
    monkeypatch.setattr(CorpusStore, "append", original)
    report = index_file(source, tmp_path / "store", model=HashEncoder(), **options)
    assert report.resumed_from == 20 and report.rows_total == 40
    with TextIndex.open(tmp_path / "store", encoder=HashEncoder()) as text_index:
        assert [r["title"] for r in text_index.records.get(range(40))] == [
            f"doc {i}" for i in range(40)
        ]


def test_row_range_indexes_a_shard(tmp_path):
    report = index_file(
        write_parquet(tmp_path),
        tmp_path / "shard",
        text_column="title",
        model=HashEncoder(),
        rows=(100, 400),
        ranges=np.stack([-np.ones(24), np.ones(24)]).astype(np.float32),
        progress=False,
    )
    assert report.rows_total == 50 and report.calibration == "ranges given to create"
    with TextIndex.open(tmp_path / "shard", encoder=HashEncoder()) as text_index:
        assert text_index.records.get([0])[0]["title"] == "doc 100"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"template": "{body}"}, "indexed with text {'template': '{title}: {body}'}"),
        ({"model": "wordllama"}, "indexed with model 'hash-24', not 'wordllama'"),
        ({"rows": (5, None)}, "indexed with start_row 0, not 5"),
    ],
)
def test_resuming_with_other_options_is_refused(tmp_path, change, message):
    source = write_parquet(tmp_path, 30)
    options = {"template": "{title}: {body}", "model": HashEncoder(), "progress": False}
    index_file(source, tmp_path / "store", **options)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        index_file(source, tmp_path / "store", **(options | change))


def test_bad_inputs_raise_before_anything_is_written(tmp_path):
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"title": pa.array([], pa.string())}), empty)
    with pytest.raises(InputError, match="no rows to index"):
        index_file(empty, tmp_path / "a", text_column="title", model=HashEncoder())
    with pytest.raises(InputError, match="unknown column 'nope'"):
        index_file(write_parquet(tmp_path), tmp_path / "a", text_column="nope", model=HashEncoder())
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x").write_text("mine")
    with pytest.raises(FileNotFoundError, match="not a fastquant store"):
        index_file(
            write_parquet(tmp_path), tmp_path / "occupied", text_column="title", model=HashEncoder()
        )
    assert (tmp_path / "occupied" / "x").read_text() == "mine"
    assert not (tmp_path / "a").exists()
    with pytest.raises(ModelNotAvailableError, match="never downloads"):
        index_file(
            write_parquet(tmp_path), tmp_path / "a", text_column="title", model="org/unknown-model"
        )


def test_a_store_of_embeddings_cannot_be_searched_by_text(tmp_path):
    store = CorpusStore.create(tmp_path / "plain", 24)
    store.append(HashEncoder().encode(["a", "b"]))
    store.close()
    with pytest.raises(StoreCorruptedError, match="not built by fastquant index"):
        TextIndex.open(tmp_path / "plain")
    with pytest.raises(InputError, match="holds rows that were not indexed from text"):
        index_file(
            write_parquet(tmp_path), tmp_path / "plain", text_column="title", model=HashEncoder()
        )


def test_wordllama_encoder_is_offline_normalized_float32():
    encoder = load_encoder("wordllama")
    vectors = encoder.encode(["aspirin for headache", "antibiotic for infection"])
    assert encoder.dim == 256 and vectors.shape == (2, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)


def test_resuming_from_a_changed_input_is_refused(tmp_path):
    options = {"text_column": "title", "model": HashEncoder(), "progress": False}
    index_file(write_parquet(tmp_path, 30), tmp_path / "store", **options)
    changed = tmp_path / "changed.parquet"
    table = pq.read_table(write_parquet(tmp_path, 60))
    pq.write_table(table.take(list(range(59, -1, -1))), changed)  # same columns, other order
    with pytest.raises(InputError, match="row 29 of .*changed.parquet differs from the record"):
        index_file(changed, tmp_path / "store", **options)
    with pytest.raises(InputError, match="holds 30 rows but .* has only 20 to index"):
        index_file(write_parquet(tmp_path, 20), tmp_path / "store", **options)
    with CorpusStore.open(tmp_path / "store") as store:
        assert len(store) == 30


def test_empty_texts_embed_to_zero_vectors_not_nan(tmp_path):
    file = tmp_path / "gaps.csv"
    file.write_text("id,body\n1,hello world\n2,\n3,   \n4,foo bar\n")
    report = index_file(
        file, tmp_path / "store", text_column="body", model="wordllama", progress=False
    )
    assert report.rows_total == 4
    with TextIndex.open(tmp_path / "store") as text_index:
        (result,) = text_index.search("", k=4)
        assert len(result.hits) == 4


# -- the stages (fastquant.pipeline) -------------------------------------------------------------


class Rows(list):
    """A stand-in batch: only its length (rows) matters to the stages below."""


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_commit_policy_commits_when_time_or_rows_are_due():
    clock = FakeClock()
    policy = CommitPolicy(seconds=2.0, rows=100, clock=clock)
    arrivals = [(Rows([0] * 10), 0.5), (Rows([0] * 10), 1.0), (Rows([0] * 10), 0.6)]
    arrivals += [(Rows([0] * 95), 0.1), (Rows([0] * 10), 0.1), (Rows([0] * 3), 0.1)]

    def batches():
        for batch, seconds in arrivals:
            clock.now += seconds  # time spent reading and embedding it
            yield batch

    groups = [list(map(len, group)) for group in policy.groups([Rows([0] * 10)], batches())]
    # 2 s after the start (10 + 10 + 10 + 10 rows); then 100 rows; then the rest at the end.
    assert groups == [[10, 10, 10, 10], [95, 10], [3]]


def test_commit_policy_looks_at_the_calibration_rows_before_reading_more():
    clock = FakeClock()
    policy = CommitPolicy(seconds=2.0, clock=clock)
    clock.now = 30.0  # calibrating took long: its rows are committed at once, not split
    read = []
    rest = (read.append(i) or Rows([0]) for i in range(3))
    groups = policy.groups([Rows([0] * 8), Rows([0] * 8)], rest)
    assert list(map(len, next(groups))) == [8, 8] and read == []
    assert [list(map(len, g)) for g in groups] == [[1, 1, 1]]
    assert [list(map(len, g)) for g in CommitPolicy(seconds=0).groups([], [Rows([0])] * 3)] == [
        [1],
        [1],
        [1],
    ]


def test_calibration_takes_the_first_whole_batches():
    batches = iter([Rows([0] * 32) for _ in range(5)])
    assert list(map(len, first_batches(batches, 40))) == [32, 32]
    assert len(list(batches)) == 3  # the rest is left to commit
    assert list(map(len, first_batches(iter([Rows([0] * 5)]), 40))) == [5]
    one_row = EmbeddedBatch(pa.RecordBatch.from_pylist([{"a": 1}]), np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="at least two rows"):
        calibration_sample([one_row])


def test_progress_sums_the_parts_and_ignores_late_counts():
    seen = []
    with Progress(lambda done, total: seen.append((done, total)), 100, parts=3) as shown:
        shown.committed(10, part=2)
        shown.committed(30, part=0)
        shown.committed(5, part=2)  # an older event arriving late
        shown.committed(40, part=1)
    assert seen == [(10, 100), (40, 100), (40, 100), (80, 100)]
    with Progress(True, 50, done=20) as bar:
        assert list(bar.track([Rows([0] * 8), Rows([0] * 8)])) == [[0] * 8, [0] * 8]
        assert bar._bar.n == 36
        bar.committed(30)  # behind what was shown: the bar does not move back
        assert bar._bar.n == 36


def test_a_single_row_cannot_calibrate_but_can_use_given_ranges(tmp_path):
    source = write_parquet(tmp_path, 1)
    with pytest.raises(ValueError, match="at least two rows"):
        index_file(source, tmp_path / "a", text_column="title", model=HashEncoder(), progress=False)
    ranges = np.stack([-np.ones(24), np.ones(24)]).astype(np.float32)
    report = index_file(
        source,
        tmp_path / "b",
        text_column="title",
        model=HashEncoder(),
        ranges=ranges,
        progress=False,
    )
    assert report.rows_total == 1 and report.calibration == "ranges given to create"
