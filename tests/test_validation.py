"""One error policy at every public entry point: TypeError for the wrong kind of thing, ValueError
for a bad value; numbers that would overflow float32 scores are refused, not answered wrongly."""

from __future__ import annotations

import numpy as np
import pytest

from fastquant import (
    Calibration,
    CorpusStore,
    hamming_topk,
    int8_topk,
    quantize_embeddings,
    rescore_bits,
    rescore_int8,
)
from fastquant._kernels import config
from naive import naive_bit_scores, naive_int8_scores

DIM = 37


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(5)
    corpus = rng.standard_normal((300, DIM)).astype(np.float32)
    queries = rng.standard_normal((3, DIM)).astype(np.float32)
    calibration = Calibration.from_embeddings(corpus)
    store = CorpusStore.create(tmp_path_factory.mktemp("v") / "store", DIM, chunk_rows=64)
    store.append(corpus)
    return {
        "corpus": corpus,
        "queries": queries,
        "calibration": calibration,
        "codes": calibration.quantize(corpus),
        "bits": quantize_embeddings(corpus, "ubinary"),
        "candidates": np.tile(np.arange(40), (3, 1)),
        "store": store,
    }


def _searches(d):
    """Every public search, as ``name -> call(queries, **options)``."""
    return {
        "hamming_topk": lambda q, **o: hamming_topk(
            d["bits"], quantize_embeddings(q, "ubinary"), 5, **o
        ),
        "rescore_int8": lambda q, **o: rescore_int8(
            d["codes"], q, d["candidates"][: len(q)], 5, calibration=d["calibration"], **o
        ),
        "rescore_bits": lambda q, **o: rescore_bits(
            d["bits"], q, d["candidates"][: len(q)], 5, **o
        ),
        "int8_topk": lambda q, **o: int8_topk(d["codes"], q, 5, calibration=d["calibration"], **o),
        "store.search": lambda q, **o: d["store"].search(q, 5, **o),
        "store.exact_search": lambda q, **o: d["store"].exact_search(q, 5, **o),
    }


SEARCHES = [
    "hamming_topk",
    "rescore_int8",
    "rescore_bits",
    "int8_topk",
    "store.search",
    "store.exact_search",
]


@pytest.mark.parametrize("name", SEARCHES)
@pytest.mark.parametrize("threads", [1.5, "2", True])
def test_non_integer_threads_are_a_type_error(data, name, threads):
    with pytest.raises(TypeError, match="threads must be an integer"):
        _searches(data)[name](data["queries"], threads=threads)


@pytest.mark.parametrize("name", SEARCHES)
def test_numpy_integers_are_integers(data, name):
    search = _searches(data)[name]
    expected = search(data["queries"], threads=2)
    got = search(data["queries"], threads=np.int64(2))
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("name", SEARCHES)
@pytest.mark.parametrize("threads", [0, -2])
def test_threads_below_one_are_a_value_error(data, name, threads):
    with pytest.raises(ValueError, match="threads must be positive"):
        _searches(data)[name](data["queries"], threads=threads)


@pytest.mark.parametrize("name", [n for n in SEARCHES if n != "hamming_topk"])
@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2"])
def test_big_endian_queries_are_converted(data, name, dtype):
    search = _searches(data)[name]
    expected = search(data["queries"])
    got = search(data["queries"].astype(dtype))
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("name", [n for n in SEARCHES if n != "hamming_topk"])
def test_queries_whose_scores_overflow_float32_are_refused(data, name):
    """A finite 1e37 query used to return id 2**63 - 1, negative ids or NaN scores."""
    huge = data["queries"].copy()
    huge[1] *= 1e37
    with pytest.raises(ValueError, match="query_f32 row 1 is too large to score in float32"):
        _searches(data)[name](huge)


@pytest.mark.parametrize("name", [n for n in SEARCHES if n != "hamming_topk"])
def test_float64_beyond_float32_is_refused_by_name(data, name):
    """1e39 is finite as float64 but Inf as float32: it is not called NaN or Inf."""
    huge = data["queries"].astype(np.float64)
    huge[2, 3] = 1e39
    with pytest.raises(ValueError, match=r"1 values beyond the float32 range .*first in row 2"):
        _searches(data)[name](huge)


@pytest.mark.parametrize("name", [n for n in SEARCHES if n != "hamming_topk"])
def test_large_but_safe_queries_score_finitely(data, name):
    scores, ids = _searches(data)[name](data["queries"] * 1e30)
    assert np.isfinite(scores).all() and (ids >= 0).all() and (ids < 300).all()


def test_rescore_bits_reads_signed_binary_codes_as_their_bits(data):
    """int8 ``binary`` codes are the packed bytes minus 128: scored as the same bits."""
    signed = quantize_embeddings(data["corpus"], "binary")
    candidates = data["candidates"]
    unsigned = rescore_bits(data["bits"], data["queries"], candidates)
    got = rescore_bits(signed, data["queries"], candidates)
    np.testing.assert_array_equal(got[0], unsigned[0])
    np.testing.assert_array_equal(got[1], unsigned[1])
    expected = naive_bit_scores(data["queries"], data["bits"])
    np.testing.assert_allclose(
        got[0], np.take_along_axis(expected, got[1], 1), rtol=1e-4, atol=1e-3
    )


def test_a_calibration_of_another_dimension_is_named(data):
    wrong = Calibration.from_embeddings(np.random.default_rng(1).standard_normal((9, 10)))
    for call in (
        lambda: rescore_int8(data["codes"], data["queries"], data["candidates"], calibration=wrong),
        lambda: int8_topk(data["codes"], data["queries"], 3, calibration=wrong),
    ):
        with pytest.raises(ValueError, match=r"calibration is for 10-d embeddings, but codes_i8"):
            call()


def test_parallel_scoring_gives_the_serial_bits(data, monkeypatch):
    """Splitting the pairs across threads changes no score (sharded and single searches agree)."""
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((16, DIM)).astype(np.float32)
    candidates = np.stack([rng.permutation(300)[:200] for _ in range(16)])
    serial_int8 = rescore_int8(data["codes"], queries, candidates, calibration=data["calibration"])
    serial_bits = rescore_bits(data["bits"], queries, candidates)
    monkeypatch.setattr(config, "PARALLEL_MIN_WORK_BYTES", 0)
    for threads in (2, 3):
        got = rescore_int8(
            data["codes"], queries, candidates, calibration=data["calibration"], threads=threads
        )
        np.testing.assert_array_equal(got[0], serial_int8[0])
        np.testing.assert_array_equal(got[1], serial_int8[1])
        got = rescore_bits(data["bits"], queries, candidates, threads=threads)
        np.testing.assert_array_equal(got[0], serial_bits[0])
        np.testing.assert_array_equal(got[1], serial_bits[1])
    expected = naive_int8_scores(queries, data["codes"], data["calibration"].ranges)
    np.testing.assert_allclose(
        serial_int8[0], np.take_along_axis(expected, serial_int8[1], 1), rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s: CorpusStore.create(s, "8"), TypeError, "dim must be an integer"),
        (lambda s: CorpusStore.create(s, 8.0), TypeError, "dim must be an integer"),
        (lambda s: CorpusStore.create(s, 8, chunk_rows=2.5), TypeError, "chunk_rows must be an"),
        (lambda s: CorpusStore.create(s, 0), ValueError, "dim must be positive"),
        (lambda s: CorpusStore.create(s, np.int32(8)).dim == 8, None, None),
    ],
)
def test_store_create_follows_the_policy(tmp_path, call, error, match):
    if error is None:
        assert call(tmp_path / "store")
        return
    with pytest.raises(error, match=match):
        call(tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_store_search_names_an_unknown_rescore_mode(data):
    with pytest.raises(ValueError, match="rescore must be one of 'int8', 'bits', 'none'"):
        data["store"].search(data["queries"], rescore="float")
    with pytest.raises(ValueError, match="backend must be one of"):
        data["store"].search(data["queries"], backend="annoy")
