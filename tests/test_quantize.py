"""Quantization against sentence-transformers and NumPy references; every bad input is refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

from fastquant import quantize as quantize_module
from fastquant._kernels.pack import (
    pack_sign_bits,
    pack_sign_bits_parallel,
    quantize_int8,
    quantize_int8_parallel,
)
from fastquant.quantize import PRECISIONS, Calibration, quantize_embeddings
from naive import naive_pack_bits, naive_quantize_int8

DIMS = (1, 3, 7, 9, 383, 385)
FLOATS = (np.float16, np.float32, np.float64)
PROPERTY = settings(deadline=None, max_examples=50)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def normal(shape: tuple[int, ...], dtype=np.float32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def finite_floats(dtype) -> st.SearchStrategy[float]:
    bound = 1e4 if dtype == np.float16 else 1e6
    return st.floats(-bound, bound, width=np.dtype(dtype).itemsize * 8)


@st.composite
def embeddings(draw, dtypes=FLOATS, min_rows: int = 2, max_rows: int = 6) -> np.ndarray:
    """``(n, d)`` finite float arrays on the awkward dimensions."""
    dtype = draw(st.sampled_from(dtypes))
    shape = (draw(st.integers(min_rows, max_rows)), draw(st.sampled_from(DIMS)))
    return draw(hnp.arrays(dtype, shape, elements=finite_floats(dtype)))


@st.composite
def sorted_ranges(draw, dim: int) -> np.ndarray:
    """``(2, dim) float32`` ranges with min <= max."""
    bounds = draw(hnp.arrays(np.float32, (2, dim), elements=st.floats(-1e3, 1e3, width=32)))
    return np.sort(bounds, axis=0)


# --- sentence-transformers compatibility ------------------------------------------------------


@PROPERTY
@given(x=embeddings(), precision=st.sampled_from(PRECISIONS))
def test_matches_sentence_transformers(x, precision):
    assert_same(quantize_embeddings(x, precision), st_quantize(x, precision))


@PROPERTY
@given(x=embeddings(min_rows=1), precision=st.sampled_from(PRECISIONS), data=st.data())
def test_matches_sentence_transformers_with_ranges(x, precision, data):
    ranges = data.draw(sorted_ranges(x.shape[1]))
    assert_same(
        quantize_embeddings(x, precision, ranges=ranges), st_quantize(x, precision, ranges=ranges)
    )


@PROPERTY
@given(x=embeddings(min_rows=1), precision=st.sampled_from(PRECISIONS), data=st.data())
def test_matches_sentence_transformers_with_calibration(x, precision, data):
    shape = (data.draw(st.integers(1, 5)), x.shape[1])
    calibration = data.draw(hnp.arrays(np.float32, shape, elements=finite_floats(np.float32)))
    assert_same(
        quantize_embeddings(x, precision, calibration_embeddings=calibration),
        st_quantize(x, precision, calibration_embeddings=calibration),
    )


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("dim", DIMS)
def test_matches_sentence_transformers_on_normal_data(dim, dtype, precision):
    corpus = normal((40, dim), dtype)
    queries = normal((5, dim), dtype, seed=1)
    ranges = np.vstack((corpus.min(axis=0), corpus.max(axis=0)))
    assert_same(quantize_embeddings(corpus, precision), st_quantize(corpus, precision))
    for vectors in (queries, queries[0], queries[:1]):  # 2-D, 1-D, one row
        assert_same(
            quantize_embeddings(vectors, precision, ranges=ranges),
            st_quantize(vectors, precision, ranges=ranges),
        )
        assert_same(
            quantize_embeddings(vectors, precision, calibration_embeddings=corpus),
            st_quantize(vectors, precision, calibration_embeddings=corpus),
        )


@pytest.mark.parametrize("precision", PRECISIONS)
def test_parallel_path_matches_sentence_transformers(precision, monkeypatch):
    monkeypatch.setattr(quantize_module, "QUANTIZE_PARALLEL_MIN_ELEMENTS", 0)
    for dtype in FLOATS:
        x = normal((300, 385), dtype)
        assert_same(quantize_embeddings(x, precision), st_quantize(x, precision))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_lists_and_tensors_match_sentence_transformers(precision):
    x = normal((6, 9))
    ranges = np.vstack((x.min(axis=0) - 1, x.max(axis=0) + 1))
    inputs = [
        list(x),
        x.tolist(),
        torch.from_numpy(x),
        torch.from_numpy(x).to(torch.float16),
        torch.from_numpy(x).to(torch.bfloat16),
        list(torch.from_numpy(x)),
    ]
    for embeddings_in in inputs:
        assert_same(
            quantize_embeddings(embeddings_in, precision), st_quantize(embeddings_in, precision)
        )
        assert_same(
            quantize_embeddings(embeddings_in, precision, ranges=ranges),
            st_quantize(embeddings_in, precision, ranges=ranges),
        )
    assert quantize_embeddings([], precision) == st_quantize([], precision) == []
    # sentence-transformers cannot convert a tensor that requires grad; fastquant detaches it.
    assert_same(
        quantize_embeddings(torch.from_numpy(x).requires_grad_(), precision, ranges=ranges),
        st_quantize(x, precision, ranges=ranges),
    )


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("dim", (9, 385))
def test_multi_vector_matches_sentence_transformers(precision, dim):
    documents = [normal((rows, dim), seed=rows) for rows in (3, 0, 5, 1)]
    calibration = normal((20, dim), seed=7)
    ranges = np.vstack((calibration.min(axis=0), calibration.max(axis=0)))
    for kwargs in ({}, {"ranges": ranges}, {"calibration_embeddings": calibration}):
        for as_tensor in (False, True):
            docs = [torch.from_numpy(d) for d in documents] if as_tensor else documents
            actual = quantize_embeddings(docs, precision, **kwargs)
            expected = st_quantize(docs, precision, **kwargs)
            assert isinstance(actual, list) and len(actual) == len(expected)
            for a, e in zip(actual, expected):
                assert_same(a, e)


# --- kernels against the NumPy references ------------------------------------------------------


@PROPERTY
@given(x=embeddings(dtypes=(np.float32, np.float64), min_rows=1))
def test_pack_kernels_match_naive(x):
    expected = naive_pack_bits(x)
    np.testing.assert_array_equal(expected, np.packbits(x > 0, axis=1))
    for kernel in (pack_sign_bits, pack_sign_bits_parallel):
        out = np.full(expected.shape, 0xA5, dtype=np.uint8)
        kernel(x, out)
        np.testing.assert_array_equal(out, expected)


@PROPERTY
@given(x=embeddings(dtypes=(np.float32, np.float64), min_rows=1), data=st.data())
def test_quantize_kernels_match_naive(x, data):
    calibration = Calibration(data.draw(sorted_ranges(x.shape[1])))
    expected = naive_quantize_int8(x, calibration.ranges)
    for kernel in (quantize_int8, quantize_int8_parallel):
        out = np.zeros(x.shape, dtype=np.int8)
        kernel(x, calibration.starts.astype(x.dtype), calibration.steps.astype(x.dtype), out)
        np.testing.assert_array_equal(out, expected)


def test_values_outside_ranges_saturate():
    x = np.linspace(-3, 3, 7 * 385, dtype=np.float32).reshape(7, 385)
    ranges = np.array([[-1.0] * 385, [1.0] * 385], dtype=np.float32)
    codes = quantize_embeddings(x, "int8", ranges=ranges)
    assert_same(codes, naive_quantize_int8(x, ranges))
    assert (codes[x < -1] == -128).all() and (codes[x > 1] == 127).all()
    expected = st_quantize(x, "uint8", ranges=ranges)
    assert_same(quantize_embeddings(x, "uint8", ranges=ranges), expected)


def test_binary_packing_is_per_row():
    d = 13
    x = np.vstack((np.ones(d), -np.ones(d), np.r_[np.ones(d - 1), -1.0])).astype(np.float32)
    codes = quantize_embeddings(x, "ubinary")
    np.testing.assert_array_equal(codes, [[0xFF, 0xF8], [0x00, 0x00], [0xFF, 0xF0]])
    np.testing.assert_array_equal(np.unpackbits(codes, axis=1)[:, :d], x > 0)
    assert not np.unpackbits(codes, axis=1)[:, d:].any()
    assert_same(quantize_embeddings(x[0], "ubinary"), codes[0])
    assert_same(quantize_embeddings(x, "binary"), (codes - 128).astype(np.int8))


@pytest.mark.parametrize("dtype", FLOATS)
def test_huge_finite_values_are_accepted(dtype):
    x = np.full((3, 9), np.finfo(dtype).max, dtype=dtype)  # row sums overflow, values are finite
    x[1] *= -1
    for precision in ("float32", "binary", "ubinary"):
        with np.errstate(over="ignore"):
            assert_same(quantize_embeddings(x, precision), st_quantize(x, precision))
    if dtype == np.float16:
        assert_same(quantize_embeddings(x, "int8"), st_quantize(x, "int8"))
    else:  # max - min overflows float32, where sentence-transformers casts NaN levels to int8
        with pytest.raises(ValueError, match=r"ranges overflow float32"):
            quantize_embeddings(x, "int8")


# --- Calibration --------------------------------------------------------------------------------


def test_calibration_save_load_round_trip(tmp_path):
    calibration = Calibration.from_embeddings(normal((50, 385)))
    path = tmp_path / "ranges.npy"
    calibration.save(path)
    loaded = Calibration.load(path)
    assert_same(loaded.ranges, calibration.ranges)
    assert_same(loaded.steps, calibration.steps)
    queries = normal((4, 385), seed=3)
    assert_same(loaded.quantize(queries), calibration.quantize(queries))


@pytest.mark.parametrize("precision", ("int8", "uint8"))
def test_calibration_reused_for_corpus_and_queries(precision):
    corpus, queries = normal((60, 9), np.float64), normal((5, 9), np.float64, seed=2)
    calibration = Calibration.from_embeddings(corpus)
    assert calibration.dim == 9
    for array in (calibration.ranges, calibration.starts, calibration.steps):
        assert array.dtype == np.float32
    for x in (corpus, queries, queries[0]):
        expected = st_quantize(x, precision, calibration_embeddings=corpus)
        assert_same(calibration.quantize(x, precision), expected)
        assert_same(quantize_embeddings(x, precision, ranges=calibration.ranges), expected)


def test_calibration_steps_and_dequantize():
    x = normal((30, 7))
    x[:, 3] = 0.5  # constant dimension: step 1
    calibration = Calibration.from_embeddings(x)
    expected_steps = (calibration.ranges[1] - calibration.ranges[0]) / np.float32(255)
    expected_steps[3] = 1
    assert_same(calibration.steps, expected_steps)
    codes = calibration.quantize(x)
    restored = calibration.dequantize(codes)
    assert_same(restored, calibration.starts + (codes.astype(np.float32) + 128) * calibration.steps)
    assert (np.abs(restored - x) <= calibration.steps * 1.001).all()
    assert_same(calibration.dequantize(codes[0]), restored[0])


def test_calibration_is_frozen_and_does_not_alias_its_input():
    ranges = np.array([[0.0, -1.0], [1.0, 1.0]])
    calibration = Calibration(ranges)
    ranges[0, 0] = 5
    assert calibration.ranges[0, 0] == 0
    assert not calibration.ranges.flags.writeable and not calibration.steps.flags.writeable
    with pytest.raises(AttributeError):
        calibration.ranges = ranges


# --- bad inputs -----------------------------------------------------------------------------------

X = normal((10, 9))


def with_value(value: float, row: int = 3) -> np.ndarray:
    x = X.copy()
    x[row, 2] = value
    return x


BAD_CALLS = [
    ((with_value(np.nan), "int8"), {}, ValueError, r"1 NaN or Inf values \(first in row 3\)"),
    ((with_value(np.inf), "binary"), {}, ValueError, r"NaN or Inf"),
    (
        (np.array([1.0, -np.inf, np.nan]), "ubinary"),
        {},
        ValueError,
        r"2 NaN or Inf values \(first in index 1",
    ),
    ((X.astype(np.int64), "int8"), {}, TypeError, r"float embeddings.*int64"),
    ((X > 0, "binary"), {}, TypeError, r"float embeddings.*bool"),
    ((X.astype(np.uint8), "int8"), {}, TypeError, r"float embeddings"),
    ((np.array(["a", "b"]), "binary"), {}, TypeError, r"float embeddings"),
    ((X.reshape(2, 5, 9), "int8"), {}, ValueError, r"1-D or 2-D"),
    ((np.zeros((4, 0), np.float32), "binary"), {}, ValueError, r"empty"),
    ((np.zeros(0, np.float32), "float32"), {}, ValueError, r"empty"),
    (
        (X, "int4"),
        {},
        ValueError,
        r"precision must be one of 'float32', 'int8', 'uint8', 'binary', 'ubinary'",
    ),
    ((X, None), {}, TypeError, r"precision must be a string"),
    ((X, "int8"), {"ranges": np.zeros((9, 2))}, ValueError, r"ranges must have shape \(2, d\)"),
    ((X, "int8"), {"ranges": np.zeros((2, 8))}, ValueError, r"ranges must have shape \(2, 9\)"),
    ((X, "int8"), {"ranges": np.zeros(9)}, ValueError, r"ranges must have shape \(2, d\)"),
    ((X, "uint8"), {"ranges": np.full((2, 9), np.nan)}, ValueError, r"ranges contains 18 NaN"),
    ((X, "int8"), {"ranges": np.array([[1.0] * 9, [0.0] * 9])}, ValueError, r"min > max in 9"),
    ((X, "int8"), {"ranges": np.array([["a"] * 9] * 2)}, TypeError, r"ranges must be a numeric"),
    (
        (X, "int8"),
        {"calibration_embeddings": normal((5, 8))},
        ValueError,
        r"calibration_emb.* 8, expected 9",
    ),
    (
        (X, "int8"),
        {"calibration_embeddings": with_value(np.nan, 0)},
        ValueError,
        r"calibration_emb.* 1 NaN",
    ),
    (
        (X, "int8"),
        {"calibration_embeddings": X[0]},
        ValueError,
        r"calibration_embeddings must be 2-D",
    ),
    (
        (X, "int8"),
        {"calibration_embeddings": X.astype(int)},
        TypeError,
        r"calibration_emb.* must hold float",
    ),
    ((X[0], "int8"), {}, ValueError, r"single embedding"),
    ((X[:1], "uint8"), {}, ValueError, r"single embedding"),
    (([X[:1]], "int8"), {}, ValueError, r"single embedding"),
    (([X, normal((2, 8))], "int8"), {}, ValueError, r"embeddings\[1\] has dimension 8, expected 9"),
    (
        ([X, with_value(np.nan)], "binary"),
        {},
        ValueError,
        r"embeddings\[1\] contains 1 NaN .*row 3",
    ),
    (([X, X[0]], "int8"), {}, ValueError, r"embeddings\[1\] must be 2-D"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), BAD_CALLS)
def test_bad_inputs_raise_a_named_error(args, kwargs, error, match):
    """TypeError for the wrong kind of thing (dtype, type), ValueError for a bad value."""
    with pytest.raises(error, match=match):
        quantize_embeddings(*args, **kwargs)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_no_rows_give_empty_codes_like_sentence_transformers(precision):
    """sentence-transformers 6.3 returns ``(0, width)`` codes for a ``(0, d)`` matrix."""
    empty = np.zeros((0, 9), np.float32)
    assert_same(quantize_embeddings(empty, precision), st_quantize(empty, precision))
    actual = quantize_embeddings([X[:0], X[:0]], precision)
    expected = st_quantize([X[:0], X[:0]], precision)
    assert len(actual) == len(expected) == 2
    for a, e in zip(actual, expected):
        assert_same(a, e)


def test_big_endian_input_is_quantized_like_native():
    for dtype in (">f4", ">f8"):
        swapped = X.astype(dtype)
        for precision in PRECISIONS:
            assert_same(
                quantize_embeddings(swapped, precision), st_quantize(X.astype(dtype), precision)
            )


def test_bad_calibration_calls_raise_value_error():
    calibration = Calibration.from_embeddings(X)
    with pytest.raises(ValueError, match=r"precision must be one of 'int8', 'uint8'"):
        calibration.quantize(X, "binary")
    with pytest.raises(ValueError, match=r"embeddings has dimension 8, expected 9"):
        calibration.quantize(X[:, :8])
    with pytest.raises(ValueError, match=r"NaN or Inf"):
        calibration.quantize(with_value(np.inf))
    with pytest.raises(TypeError, match=r"codes_i8 must be int8"):
        calibration.dequantize(np.zeros((2, 9), np.uint8))
    with pytest.raises(ValueError, match=r"codes_i8 has dimension 8, expected 9"):
        calibration.dequantize(np.zeros((2, 8), np.int8))
    with pytest.raises(ValueError, match=r"calibration_embeddings is empty"):
        Calibration.from_embeddings(X[:0])
    with pytest.raises(TypeError, match=r"float embeddings"):
        quantize_embeddings(X.astype(np.int32), "ubinary")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (np.zeros((3, 9), np.float32), r"shape \(2, d\)"),
        (np.zeros((2, 9), np.int64), r"\(2, d\) float array"),
        (np.full((2, 9), np.inf, np.float32), r"NaN or Inf"),
        (b"not a numpy file", r"not a \.npy file"),
        ({"ranges": np.zeros((2, 9), np.float32)}, r"\(2, d\) float array"),
    ],
)
def test_loading_a_bad_file_names_it(tmp_path, content, problem):
    path = tmp_path / "bad.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        with open(path, "wb") as file:
            np.savez(file, **content)
    else:
        np.save(path, content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + problem):
        Calibration.load(path)


# --- inputs are read, never written ---------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_inputs_are_not_modified(precision, dtype):
    x = normal((12, 385), dtype)
    ranges = np.vstack((x.min(axis=0), x.max(axis=0))).astype(np.float64)
    calibration = normal((8, 385), dtype, seed=5)
    documents = [x[:5].copy(), x[5:].copy()]
    originals = [a.copy() for a in (x, ranges, calibration, *documents)]
    quantize_embeddings(x, precision)
    quantize_embeddings(x, precision, ranges=ranges)
    quantize_embeddings(x, precision, calibration_embeddings=calibration)
    quantize_embeddings(documents, precision)
    for original, now in zip(originals, (x, ranges, calibration, *documents)):
        assert_same(now, original)
    assert quantize_embeddings(x, "float32") is not x


@pytest.mark.parametrize("precision", PRECISIONS)
def test_read_only_and_non_contiguous_inputs(precision):
    base = normal((20, 770), np.float64)
    read_only = base[:, :385].copy()
    read_only.flags.writeable = False
    views = [read_only, base[:, ::2], base[::3, 1::2], np.asfortranarray(base[:, :385])]
    for x in views:
        assert_same(quantize_embeddings(x, precision), st_quantize(x, precision))
        assert_same(
            quantize_embeddings(x[0], precision, ranges=np.vstack((x.min(0), x.max(0)))),
            st_quantize(x[0], precision, ranges=np.vstack((x.min(0), x.max(0)))),
        )
