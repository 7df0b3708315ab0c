"""``fastquant.distributed`` on a real ``LocalCluster`` of two worker processes.

Every search is compared for exact equality (scores and ids) with ``CorpusStore.search`` of one
store holding all the shards' rows in order, created with the same int8 ranges; rows are drawn
from a few distinct vectors so that Hamming distances and scores tie often. Failures: missing,
damaged and mismatched shards, bad input, a worker killed during a search, a task that raises once.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("distributed")

from distributed import Client, LocalCluster

from fastquant import (
    Calibration,
    CorpusStore,
    StoreCorruptedError,
    StoreNotFoundError,
    distributed,
)
from fastquant.distributed import shards

DIM = 20
CHUNK_ROWS = 16


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def tied_rows(rng: np.random.Generator, n: int, dim: int, distinct: int) -> np.ndarray:
    """``(n, dim) float32`` rows drawn from ``distinct`` vectors: many exact duplicates."""
    pool = rng.standard_normal((distinct, dim)).astype(np.float32)
    return pool[rng.integers(0, distinct, n)]


def queries_for(rng: np.random.Generator, rows: np.ndarray, q: int) -> np.ndarray:
    """``(q, dim) float32``: copies of stored rows (exact ties) and random vectors."""
    dim = rows.shape[1]
    random = rng.standard_normal((q, dim)).astype(np.float32)
    if len(rows):
        copies = rows[rng.integers(0, len(rows), q)]
        random[: q // 2] = copies[: q // 2]
    return random


def shared_ranges(rng: np.random.Generator, dim: int) -> np.ndarray:
    return Calibration.from_embeddings(rng.standard_normal((16, dim)).astype(np.float32)).ranges


def build(
    root: Path,
    rows: np.ndarray,
    sizes: list[int],
    ranges: np.ndarray,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[list[Path], CorpusStore]:
    """Shards holding consecutive ``sizes`` of ``rows``, and one reference store of them all."""
    reference = CorpusStore.create(root / "single", rows.shape[1], ranges=ranges, chunk_rows=7)
    if len(rows):
        reference.append(rows)
    paths, start = [], 0
    for i, size in enumerate(sizes):
        path = root / f"shard-{i}"
        store = CorpusStore.create(path, rows.shape[1], ranges=ranges, chunk_rows=chunk_rows)
        if size:
            store.append(rows[start : start + size])
        store.close()
        paths.append(path)
        start += size
    assert start == len(rows)
    return paths, reference


def assert_same(got: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]):
    for array, reference in zip(got, expected):
        assert array.dtype == reference.dtype
        assert array.shape == reference.shape
        assert np.array_equal(array, reference)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four shards of 37, 0, 60 and 23 tied rows (one empty), their reference store and queries."""
    rng = np.random.default_rng(6)
    rows = tied_rows(rng, 120, DIM, 9)
    paths, reference = build(
        tmp_path_factory.mktemp("corpus"), rows, [37, 0, 60, 23], shared_ranges(rng, DIM)
    )
    return paths, reference, queries_for(rng, rows, 12)


# -- exactly one store's answer -------------------------------------------------------------


@pytest.mark.parametrize("multiplier", [1, 2, 4, 10])
@pytest.mark.parametrize("k", [1, 3, 10, 30, 121, 500])
def test_same_as_single_store(client, corpus, k, multiplier):
    paths, reference, queries = corpus
    got = distributed.search(client, paths, queries, k, rescore_multiplier=multiplier)
    assert_same(got, reference.search(queries, k, rescore_multiplier=multiplier))
    assert got[1].shape == (len(queries), min(k, 120))


def test_single_vector_threads_and_placement(client, corpus):
    paths, reference, queries = corpus
    expected = reference.search(queries[3], 7)
    assert_same(distributed.search(client, paths, queries[3], 7), expected)
    assert_same(distributed.search(client, paths, queries[3], 7, threads=2), expected)
    addresses = sorted(client.scheduler_info()["workers"])
    placement = [addresses[i % 2] for i in range(len(paths))]
    assert_same(distributed.search(client, paths, queries[3], 7, workers=placement), expected)
    assert_same(distributed.search(client, [str(p) for p in paths], queries[3], 7), expected)


@settings(deadline=None, max_examples=20)
@given(
    seed=st.integers(0, 2**32 - 1),
    dim=st.sampled_from([1, 9, 64, 130]),
    sizes=st.lists(st.integers(0, 70), min_size=1, max_size=4),
    distinct=st.integers(1, 6),
    q=st.integers(1, 5),
    k=st.integers(1, 40),
    multiplier=st.integers(1, 6),
    chunk_rows=st.sampled_from([5, 32, 1 << 20]),
)
def test_property_same_as_single_store(
    client, seed, dim, sizes, distinct, q, k, multiplier, chunk_rows
):
    rng = np.random.default_rng(seed)
    rows = tied_rows(rng, sum(sizes), dim, distinct)
    with tempfile.TemporaryDirectory() as root:
        paths, reference = build(
            Path(root), rows, sizes, shared_ranges(rng, dim), chunk_rows=chunk_rows
        )
        queries = queries_for(rng, rows, q)
        got = distributed.search(client, paths, queries, k, rescore_multiplier=multiplier)
        assert_same(got, reference.search(queries, k, rescore_multiplier=multiplier))


@pytest.mark.parametrize(
    "scan", ["asymmetric", "asymmetric-exact", "hamming", "hamming+asymmetric"]
)
def test_deleted_rows_are_never_returned(client, tmp_path, scan):
    rng = np.random.default_rng(8)
    rows = tied_rows(rng, 150, DIM, 40)
    sizes = [50, 40, 60]
    paths, reference = build(tmp_path, rows, sizes, shared_ranges(rng, DIM), chunk_rows=16)
    deleted = rng.choice(150, 70, replace=False)
    deleted = np.concatenate([deleted, np.arange(50, 90)])  # shard 1 loses every row
    reference.delete(deleted)
    start = 0
    for path, size in zip(paths, sizes):
        with CorpusStore.open(path) as shard:
            mine = deleted[(deleted >= start) & (deleted < start + size)] - start
            shard.delete(mine)
            if start == 0:
                shard.compact()
        start += size
    queries = queries_for(rng, rows, 5)
    for k in (3, 10, 100):
        got = distributed.search(client, paths, queries, k, scan=scan)
        assert_same(got, reference.search(queries, k, scan=scan))
        assert not np.isin(got[1], deleted).any()


def test_query_batch_larger_than_every_shard(client, tmp_path):
    rng = np.random.default_rng(1)
    rows = tied_rows(rng, 12, DIM, 4)
    paths, reference = build(tmp_path, rows, [3, 5, 0, 4], shared_ranges(rng, DIM))
    queries = queries_for(rng, rows, 200)
    for k in (2, 10):
        assert_same(distributed.search(client, paths, queries, k), reference.search(queries, k))


def test_empty_shards(client, tmp_path):
    rng = np.random.default_rng(2)
    no_rows = np.empty((0, DIM), np.float32)
    paths, reference = build(tmp_path, no_rows, [0, 0], shared_ranges(rng, DIM))
    scores, ids = distributed.search(client, paths, queries_for(rng, no_rows, 3), 5)
    assert scores.shape == ids.shape == (3, 0)
    assert (scores.dtype, ids.dtype) == (np.float32, np.int64)
    # An empty shard created without ranges has none; it holds no scores to compare.
    CorpusStore.create(tmp_path / "uncalibrated", DIM)
    rows = tied_rows(rng, 30, DIM, 3)
    full, reference = build(tmp_path / "full", rows, [30], shared_ranges(rng, DIM))
    queries = queries_for(rng, rows, 4)
    assert_same(
        distributed.search(client, [tmp_path / "uncalibrated", *full], queries, 5),
        reference.search(queries, 5),
    )


def test_sees_rows_appended_since_the_last_search(client, tmp_path):
    rng = np.random.default_rng(3)
    rows = tied_rows(rng, 50, DIM, 5)
    ranges = shared_ranges(rng, DIM)
    paths, _ = build(tmp_path, rows[:30], [10, 20], ranges)
    queries = queries_for(rng, rows, 6)
    distributed.search(client, paths, queries, 5)  # the workers open and cache both shards
    with CorpusStore.open(paths[1]) as shard:
        shard.append(rows[30:])
    _, reference = build(tmp_path / "after", rows, [50], ranges)
    assert_same(distributed.search(client, paths, queries, 5), reference.search(queries, 5))


# -- shards that cannot be searched -------------------------------------------------------------


@pytest.fixture
def two_shards(tmp_path):
    rng = np.random.default_rng(4)
    rows = tied_rows(rng, 40, DIM, 6)
    paths, _ = build(tmp_path, rows, [25, 15], shared_ranges(rng, DIM))
    return paths, queries_for(rng, rows, 3)


def test_missing_shard(client, two_shards, tmp_path):
    paths, queries = two_shards
    missing = tmp_path / "no-such-shard"
    with pytest.raises(StoreNotFoundError, match=rf"shard 2 \({missing}\).*does not exist"):
        distributed.search(client, [*paths, missing], queries, 5)
    (tmp_path / "not-a-store").mkdir()
    with pytest.raises(StoreNotFoundError, match=r"shard 0 \(.*not-a-store\).*manifest"):
        distributed.search(client, [tmp_path / "not-a-store", *paths], queries, 5)


def test_corrupted_shard(client, two_shards):
    paths, queries = two_shards
    # Damaged before any worker maps it: a mapped file cut short would crash its reader.
    codes = paths[1] / "chunks" / "000000.codes"
    intact = codes.read_bytes()
    os.truncate(codes, codes.stat().st_size - 1)
    with pytest.raises(StoreCorruptedError, match=rf"shard 1 \({paths[1]}\).*truncated"):
        distributed.search(client, paths, queries, 5)
    codes.write_bytes(intact)  # one broken shard at a time: the first error to arrive is raised
    (paths[0] / "manifest.json").write_text("{not json")
    with pytest.raises(StoreCorruptedError, match=rf"shard 0 \({paths[0]}\)"):
        distributed.search(client, paths, queries, 5)


def test_verify_names_the_damaged_shard(client, two_shards):
    paths, queries = two_shards
    row_bytes = DIM + 3 + 4  # int8 codes, packed bits, two bfloat16 factors
    assert distributed.verify(client, paths) == [25 * row_bytes, 15 * row_bytes]
    bits = paths[1] / "chunks" / "000000.bits"
    data = bytearray(bits.read_bytes())
    data[0] ^= 0xFF
    bits.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match=rf"shard 1 \({paths[1]}\).*checksum"):
        distributed.verify(client, paths)


def test_mismatched_shards(client, tmp_path):
    rng = np.random.default_rng(5)
    rows = tied_rows(rng, 20, DIM, 4)
    queries = queries_for(rng, rows, 2)
    paths, _ = build(tmp_path / "a", rows, [10, 10], shared_ranges(rng, DIM))
    other, _ = build(tmp_path / "b", rows[:5], [5], shared_ranges(rng, DIM))
    with pytest.raises(ValueError, match=rf"shard 2 \({other[0]}\) has int8 ranges different"):
        distributed.search(client, [*paths, *other], queries, 5)
    wide, _ = build(tmp_path / "c", tied_rows(rng, 5, DIM + 1, 2), [5], shared_ranges(rng, DIM + 1))
    with pytest.raises(ValueError, match=rf"shard 1 \({wide[0]}\) holds 21-d rows"):
        distributed.search(client, [paths[0], *wide], queries, 5)


def test_bad_input(client, two_shards):
    paths, queries = two_shards
    nan = queries.copy()
    nan[1, 4] = np.nan
    with pytest.raises(ValueError, match="query_f32 contains 1 NaN"):
        distributed.search(client, paths, nan, 5)
    with pytest.raises(ValueError, match=f"query_f32 has dimension {DIM - 1}, expected {DIM}"):
        distributed.search(client, paths, queries[:, :-1], 5)
    with pytest.raises(TypeError, match="float embeddings"):
        distributed.search(client, paths, queries.astype(np.int32), 5)
    with pytest.raises(ValueError, match="k must be positive"):
        distributed.search(client, paths, queries, 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        distributed.search(client, paths, queries, 2.5)
    with pytest.raises(ValueError, match="rescore_multiplier must be positive"):
        distributed.search(client, paths, queries, 5, rescore_multiplier=0)
    with pytest.raises(TypeError, match="not a single path"):
        distributed.search(client, paths[0], queries, 5)
    with pytest.raises(ValueError, match="store_paths is empty"):
        distributed.search(client, [], queries, 5)
    with pytest.raises(ValueError, match="workers has 1 entries for 2 shards"):
        distributed.search(client, paths, queries, 5, workers=[None])
    with pytest.raises(ValueError, match="retries"):
        distributed.search(client, paths, queries, 5, retries=-1)
    with pytest.raises(ValueError, match="threads"):
        distributed.search(client, paths, queries, 5, threads=0)


# -- failures the cluster recovers from ---------------------------------------------------------


def _install_on_workers(client: Client, marker: Path, failure: str) -> None:
    """Make the first shard task on any worker fail (``"exit"`` its process or ``"raise"``)."""

    def install() -> None:
        original = shards.open_shard

        def open_shard(path: str):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return original(path)
            if failure == "exit":
                os._exit(1)  # the worker process dies mid-search, as a lost machine would
            raise OSError("transient I/O error")

        open_shard.original = original
        shards.open_shard = open_shard

    client.run(install)


def _restore_workers(client: Client) -> None:
    def restore() -> None:
        shards.open_shard = getattr(shards.open_shard, "original", shards.open_shard)

    client.run(restore)


def test_worker_killed_during_a_search(client, corpus, tmp_path):
    paths, reference, queries = corpus
    marker = tmp_path / "killed"
    _install_on_workers(client, marker, "exit")
    try:
        got = distributed.search(client, paths, queries, 10)
    finally:
        client.wait_for_workers(2, timeout=60)
        _restore_workers(client)
    assert marker.exists()  # a worker did die, and its task ran again elsewhere
    assert_same(got, reference.search(queries, 10))


def test_task_that_raises_once_is_retried(client, corpus, tmp_path):
    paths, reference, queries = corpus
    _install_on_workers(client, tmp_path / "raised", "raise")
    try:
        assert_same(distributed.search(client, paths, queries, 10), reference.search(queries, 10))
        _install_on_workers(client, tmp_path / "raised-again", "raise")
        with pytest.raises(OSError, match=r"shard \d .*transient I/O error"):
            distributed.search(client, paths, queries, 10, retries=0)
    finally:
        _restore_workers(client)


# -- parallel indexing ----------------------------------------------------------------------------

WORDS = "fever cough headache pain tablet syrup allergy infection skin sleep heart blood".split()


def write_texts(folder: Path, rows: int, suffix: str) -> Path:
    """A JSONL or parquet file of ``rows`` records ``{"name", "text"}``, some texts repeated."""
    rng = np.random.default_rng(rows)
    records = [
        {"name": f"item {i}", "text": " ".join(rng.choice(WORDS, rng.integers(2, 7)))}
        for i in range(rows)
    ]
    file = folder / f"input{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), file, row_group_size=50)
    else:
        file.write_text("".join(json.dumps(record) + "\n" for record in records))
    return file


def shard_rows(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The bits and int8 codes of the shards' rows, concatenated in id order."""
    stores = [CorpusStore.open(path) for path in paths]
    snapshots = [store.snapshot for store in stores]
    return (
        np.concatenate([np.asarray(bits) for s in snapshots for bits in s.corpus.bits]),
        np.concatenate([codes for s in snapshots for codes in s.corpus.codes]),
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_index_equals_one_index_file_run(client, tmp_path, suffix):
    from fastquant.embed import index_file
    from fastquant.encoders import load_encoder

    source = write_texts(tmp_path, 333, suffix)
    options = {"model": "wordllama", "batch_size": 32, "calibration_rows": 40}
    seen: list[tuple[int, int]] = []
    paths = [tmp_path / "shard-0", tmp_path / "shard-1", tmp_path / "shard-2"]
    reports = distributed.index(
        client,
        source,
        paths,
        template="{name}: {text}",
        progress=lambda done, total: seen.append((done, total)),
        **options,
    )
    # 11 batches of 32 rows: shards of 3, 4 and 4 batches, the last one short.
    assert [r.rows_added for r in reports] == [96, 128, 109]
    assert seen[-1] == (333, 333) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))

    single = tmp_path / "single"
    index_file(source, single, template="{name}: {text}", progress=False, **options)
    reference = CorpusStore.open(single)
    for path in paths:  # the one store calibrates on the same first rows
        assert np.array_equal(
            CorpusStore.open(path).calibration.ranges, reference.calibration.ranges
        )
    for sharded, whole in zip(shard_rows(paths), shard_rows([single])):
        assert np.array_equal(sharded, whole)
    queries = load_encoder("wordllama").encode(["fever and cough", "item 7: skin allergy", "sleep"])
    for k in (1, 5, 40):
        assert_same(distributed.search(client, paths, queries, k), reference.search(queries, k))

    again = distributed.index(
        client, source, paths, template="{name}: {text}", progress=True, **options
    )
    assert [r.rows_added for r in again] == [0, 0, 0]  # resumed: nothing left (and a bar drawn)


def test_index_refuses_too_few_rows_and_objects_as_models(client, tmp_path):
    from fastquant.encoders import load_encoder
    from fastquant.sources import InputError

    source = write_texts(tmp_path, 40, ".jsonl")
    paths = [tmp_path / f"shard-{i}" for i in range(3)]
    with pytest.raises(InputError, match="40 rows, 2 batches of 32: too few for 3 shards"):
        distributed.index(
            client,
            source,
            paths,
            text_column="text",
            model="wordllama",
            batch_size=32,
            progress=False,
        )
    with pytest.raises(TypeError, match="model must be a load_encoder spec"):
        distributed.index(client, source, paths, model=load_encoder("wordllama"), progress=False)
