"""CorpusStore benchmarks: warm int8 rescoring, search against the bare Hamming scan, append rate.

Shapes (full run): a ``corpus_rows`` (1M) x 1024-d store of normalized gaussian rows, built once
per session; queries are noisy copies of stored rows; k = 10, rescore multiplier 4 (40
candidates), 2 threads. Appends: 1M x 384-d float32 in batches of 100k. As in
``test_bench_head_to_head.py``, the engines compared in one test run in alternating rounds (here
in a shuffled order per round) and the figures to quote are medians and their ratios, stored in
``extra_info``, since this machine's memory speed drifts. ``--quick`` builds 20k-row stores and
checks results only.

Run: ``python -m pytest benchmarks/test_bench_store.py --benchmark-enable
--benchmark-json=benchmarks/results/store.json``.
"""

from __future__ import annotations

import itertools
import shutil
import zlib

import numpy as np
import pytest

from fastquant import Calibration, CorpusStore, hamming_topk, quantize_embeddings, rescore_int8
from fastquant._engine import score_int8, top_by_score
from fastquant.quantize import quantize_checked
from fastquant.store.corpus import APPEND_SLICE_ROWS
from fastquant.validation import as_embeddings
from rounds import alternate, alternate_calls
from synthetic import batches, build_store, noisy_queries

DIM = 1024
APPEND_DIM = 384
SEED = 20261121
K, MULTIPLIER = 10, 4
THREADS = 2
#: Per-query rescoring budget (acceptance criterion) and end-to-end budget over the bare scan.
RESCORE_TARGET_US = 25.0
END_TO_END_TARGET_RATIO = 1.2
APPEND_TARGET_ROWS_PER_MINUTE = 1_000_000


@pytest.fixture(scope="session")
def store_1024(tmp_path_factory: pytest.TempPathFactory, corpus_rows: int):
    """A ``corpus_rows`` x 1024-d store, built once per session in a temp dir, then deleted."""
    path = tmp_path_factory.mktemp("store-bench") / "corpus.fq"
    build_store(path, corpus_rows, DIM, seed=SEED)
    yield CorpusStore.open(path)
    shutil.rmtree(path)


@pytest.fixture(scope="session")
def bits_in_ram(store_1024: CorpusStore) -> np.ndarray:
    """The store's packed bits as one in-memory ``(n, 128) uint8`` array."""
    return np.concatenate([np.asarray(chunk) for chunk in store_1024.snapshot.corpus.bits])


@pytest.fixture(scope="session")
def codes_in_ram(store_1024: CorpusStore) -> np.ndarray:
    """The store's int8 codes as one in-memory ``(n, 1024) int8`` array (1 GB at 1M rows)."""
    return np.concatenate(store_1024.snapshot.corpus.codes)


def _dequantized_scores(
    queries: np.ndarray, codes: np.ndarray, calibration: Calibration
) -> np.ndarray:
    """Reference: float64 ``(q, c)`` dot products of queries and their candidates' float rows."""
    rows = calibration.dequantize(codes.reshape(-1, codes.shape[-1])).astype(np.float64)
    return np.einsum("qcd,qd->qc", rows.reshape(codes.shape), queries.astype(np.float64))


# -- 1. warm rescoring ------------------------------------------------------------------------


def test_warm_rescoring(benchmark, store_1024, bits_in_ram, codes_in_ram, quick):
    """Per query: rescore 40 Hamming candidates (k 10 x 4) of a 1024-d query from warm int8 codes.

    ``public-in-ram``: ``fastquant.rescore_int8`` on the codes copied into one in-memory array.
    ``store``, ``store-no-prefetch``: ``fastquant._engine.score_int8`` on the store's memory-mapped chunks,
    with and without the ``madvise(WILLNEED)`` of the candidate rows. 1,000 queries (40 MB of
    candidate rows, more than the 32 MiB L3), each scored alone (batch 1).
    """
    snapshot, calibration = store_1024.snapshot, store_1024.calibration
    n_queries = 16 if quick else 1000
    queries, _ = noisy_queries(SEED, len(store_1024), DIM, n_queries)
    _, candidates = hamming_topk(
        bits_in_ram, quantize_embeddings(queries, "ubinary"), K * MULTIPLIER
    )

    def public(i: int):
        return rescore_int8(
            codes_in_ram, queries[i], candidates[i], K, calibration=calibration, threads=1
        )

    def store(i: int, prefetch: bool = True):
        scores = score_int8(
            snapshot.corpus, queries[i : i + 1], candidates[i : i + 1], prefetch=prefetch
        )
        return top_by_score(scores, candidates[i : i + 1], K)

    for i in range(n_queries):
        expected = public(i)
        for got in (store(i), store(i, prefetch=False)):
            assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    reference = _dequantized_scores(queries, codes_in_ram[candidates], calibration)
    best = -np.sort(-reference, axis=1)[:, :K]
    scores = np.concatenate([public(i)[0] for i in range(n_queries)])
    assert np.allclose(scores, best, rtol=1e-4, atol=1e-4)

    engines = {
        "public-in-ram": public,
        "store": store,
        "store-no-prefetch": lambda i: store(i, prefetch=False),
    }
    seconds = alternate_calls(engines, n_queries, rounds=1 if quick else 9)
    median_us = {name: 1e6 * float(np.median(values)) for name, values in seconds.items()}
    benchmark.extra_info.update(
        kind="store-rescore",
        rows=len(store_1024),
        dim=DIM,
        k=K,
        candidates=K * MULTIPLIER,
        batch=1,
        queries=n_queries,
        median_us_per_query=median_us,
        target_us=RESCORE_TARGET_US,
        mean_us_per_query={name: 1e6 * float(np.mean(values)) for name, values in seconds.items()},
        p90_us_per_query={
            name: 1e6 * float(np.percentile(values, 90)) for name, values in seconds.items()
        },
        store_over_public=median_us["store"] / median_us["public-in-ram"],
    )
    order = itertools.cycle(range(n_queries))
    benchmark.pedantic(lambda: store(next(order)), rounds=3 * n_queries, warmup_rounds=0)


# -- 2. end to end against the bare scan --------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 16])
def test_search_vs_kernel(benchmark, store_1024, bits_in_ram, codes_in_ram, quick, batch):
    """``store.search(q, 10)`` (mapped bits, int8 rescoring of 40) vs ``hamming_topk(bits, q, 40)``.

    Engines per round, each over the same ``calls`` batches: ``kernel`` (bare scan of in-memory
    bits), ``search`` (int8), ``search-none`` (Hamming order, no rescoring), ``search-bits`` (BPR
    rescoring), ``search-bits-in-memory`` (int8, store opened with ``bits_in_memory=True``).
    """
    memory_store = CorpusStore.open(store_1024.path, bits_in_memory=True)
    calls = {1: 8, 16: 2}[batch]
    queries, _ = noisy_queries(SEED, len(store_1024), DIM, calls * batch, query_seed=batch)
    queries = queries.reshape(calls, batch, DIM)
    query_bits = quantize_embeddings(queries.reshape(-1, DIM), "ubinary").reshape(calls, batch, -1)

    def kernel(qb: np.ndarray):
        return hamming_topk(bits_in_ram, qb, K * MULTIPLIER, threads=THREADS)

    engines = {
        "kernel": lambda: [kernel(qb) for qb in query_bits],
        "search": lambda: [store_1024.search(q, K, threads=THREADS) for q in queries],
        "search-none": lambda: [
            store_1024.search(q, K, rescore="none", threads=THREADS) for q in queries
        ],
        "search-bits": lambda: [
            store_1024.search(q, K, rescore="bits", threads=THREADS) for q in queries
        ],
        "search-bits-in-memory": lambda: [
            memory_store.search(q, K, threads=THREADS) for q in queries
        ],
    }

    for q, qb in zip(queries, query_bits):
        dist, candidates = kernel(qb)
        expected = rescore_int8(codes_in_ram, q, candidates, K, calibration=store_1024.calibration)
        for got in (
            store_1024.search(q, K, threads=THREADS),
            memory_store.search(q, K, threads=THREADS),
        ):
            assert np.array_equal(got[1], expected[1]) and np.array_equal(got[0], expected[0])
        scores, ids = store_1024.search(q, K, rescore="none", threads=THREADS)
        assert np.array_equal(ids, candidates[:, :K])
        assert np.array_equal(scores, (DIM - 2 * dist[:, :K]).astype(np.float32))

    medians = alternate(engines, rounds=1 if quick else {1: 21, 16: 9}[batch])
    benchmark.extra_info.update(
        kind="store-search",
        rows=len(store_1024),
        dim=DIM,
        batch=batch,
        k=K,
        multiplier=MULTIPLIER,
        threads=THREADS,
        calls=calls,
        median_seconds=medians,
        ms_per_query={name: 1e3 * s / (calls * batch) for name, s in medians.items()},
        over_kernel={name: s / medians["kernel"] for name, s in medians.items()},
        target_ratio=END_TO_END_TARGET_RATIO,
    )
    benchmark.pedantic(engines["search"], rounds=3, warmup_rounds=0)


# -- 3. append throughput ----------------------------------------------------------------------


def test_append_throughput(benchmark, tmp_path, corpus_rows, quick):
    """Rows per minute appending ``corpus_rows`` (1M) x 384-d float32 to a new store, 100k a batch.

    ``append`` is the whole job (validation, calibration from the first batch, quantization to
    bits and int8, CRC-32, ``pwrite``, ``fsync``, manifest commit). ``quantize`` repeats only its
    checks and quantization, on the same slices, in memory; ``crc`` its checksums; what remains
    of ``append`` is file I/O and commits. The three alternate in rounds; each round appends to a
    fresh store, deleted afterwards.
    """
    batch_rows = max(1, corpus_rows // 4) if quick else 100_000
    data = list(batches(SEED + 1, corpus_rows, APPEND_DIM, batch_rows))
    fresh = itertools.count()

    def append_all() -> CorpusStore:
        path = tmp_path / f"append-{next(fresh)}.fq"
        store = CorpusStore.create(path, APPEND_DIM)
        for batch in data:
            store.append(batch)
        store.close()
        return store

    def slices():
        for batch in data:
            for lo in range(0, batch.shape[0], APPEND_SLICE_ROWS):
                yield batch[lo : lo + APPEND_SLICE_ROWS]

    def quantize_only():  # what append computes before writing: checks, ranges, both codes
        for batch in data:
            as_embeddings("embeddings_f32", batch, 2)
        calibration = Calibration.from_embeddings(data[0])
        return [
            (quantize_checked(rows, "ubinary", None), quantize_checked(rows, "int8", calibration))
            for rows in slices()
        ]

    quantized = quantize_only()

    def crc_only():
        return [(zlib.crc32(bits), zlib.crc32(codes)) for bits, codes in quantized]

    store = append_all()
    assert len(store) == corpus_rows
    assert np.array_equal(
        np.concatenate([np.asarray(c) for c in store.snapshot.corpus.bits]),
        np.concatenate([bits for bits, _ in quantized]),
    )
    assert np.array_equal(
        np.concatenate(store.snapshot.corpus.codes),
        np.concatenate([codes for _, codes in quantized]),
    )
    assert store.verify() == corpus_rows * (APPEND_DIM + APPEND_DIM // 8)
    shutil.rmtree(store.path)

    def append_and_delete():
        shutil.rmtree(append_all().path)

    medians = alternate(
        {"append": append_and_delete, "quantize": quantize_only, "crc": crc_only},
        rounds=1 if quick else 3,
    )
    io_seconds = medians["append"] - medians["quantize"] - medians["crc"]
    benchmark.extra_info.update(
        kind="store-append",
        rows=corpus_rows,
        dim=APPEND_DIM,
        batch_rows=batch_rows,
        median_seconds=medians,
        rows_per_second=corpus_rows / medians["append"],
        rows_per_minute=60 * corpus_rows / medians["append"],
        target_rows_per_minute=APPEND_TARGET_ROWS_PER_MINUTE,
        share={
            "quantize": medians["quantize"] / medians["append"],
            "crc": medians["crc"] / medians["append"],
            "io_and_commit": io_seconds / medians["append"],
        },
    )
    benchmark.pedantic(append_and_delete, rounds=1, warmup_rounds=0)
