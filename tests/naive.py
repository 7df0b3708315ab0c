"""Plain NumPy references for fastquant's kernels, used only by tests."""

from __future__ import annotations

import numpy as np


def naive_hamming_topk(
    corpus_bits: np.ndarray, query_bits: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming top-k by unpacking every bit: ``(q, min(k, n))`` int32 distances, int64 ids.

    ``corpus_bits (n, nbytes) uint8``, ``query_bits (q, nbytes) uint8``; the result is the first
    ``min(k, n)`` entries of a stable sort of each query's distance row (ties by ascending id).
    """
    corpus = np.unpackbits(corpus_bits, axis=1)
    distances = np.stack(
        [(np.unpackbits(query) != corpus).sum(axis=1, dtype=np.int32) for query in query_bits]
    )
    ids = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, ids, axis=1), ids.astype(np.int64)


def naive_quantize_int8(x: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """int8 codes ``(n, d)`` of float ``x (n, d)``: ``clip(floor((x - min) / step), 0, 255) - 128``.

    ``ranges (2, d)`` is cast to float32, ``step = (max - min) / 255`` (1 where zero), as in
    sentence-transformers; the arithmetic runs in the dtype NumPy promotes ``x`` and float32 to.
    """
    ranges = np.asarray(ranges, dtype=np.float32)
    starts = ranges[0]
    steps = (ranges[1] - starts) / np.float32(255)
    steps = np.where(steps == 0, np.float32(1), steps)
    with np.errstate(over="ignore"):  # a level beyond the float range saturates like any other
        levels = np.floor((x - starts) / steps)
    return (np.clip(levels, 0, 255) - 128).astype(np.int8)


def naive_pack_bits(x: np.ndarray) -> np.ndarray:
    """``(n, ceil(d / 8)) uint8`` of ``x (n, d) > 0``, first bit most significant, zero-padded.

    Built from weighted sums of bits, independently of ``np.packbits``.
    """
    n, d = x.shape
    bits = np.zeros((n, -(-d // 8) * 8), dtype=np.int64)
    bits[:, :d] = x > 0
    weights = 1 << np.arange(7, -1, -1)
    return (bits.reshape(n, -1, 8) * weights).sum(axis=2).astype(np.uint8)


def naive_dequantize(codes_i8: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """float64 values ``start + (code + 128) * step`` of int8 codes ``(n, d)``."""
    ranges = np.asarray(ranges, dtype=np.float32)
    starts = ranges[0].astype(np.float64)
    steps = ((ranges[1] - ranges[0]) / np.float32(255)).astype(np.float64)
    steps = np.where(steps == 0, 1.0, steps)
    return starts + (codes_i8.astype(np.float64) + 128.0) * steps


def naive_int8_scores(queries: np.ndarray, codes_i8: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """``(q, n)`` float64 dot products of queries with every dequantized code row."""
    return queries.astype(np.float64) @ naive_dequantize(codes_i8, ranges).T


def naive_bit_scores(queries: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """``(q, n)`` float64 BPR scores ``q . (2b - 1)`` with ``b`` the unpacked bits of each row."""
    d = queries.shape[1]
    signs = 2.0 * np.unpackbits(bits, axis=1)[:, :d] - 1.0
    return queries.astype(np.float64) @ signs.T


def naive_bfloat16(values: np.ndarray) -> np.ndarray:
    """``uint16`` bfloat16 patterns of float64 ``values``: nearest, ties to even, saturated."""
    largest = 3.3895313892515355e38
    bits = np.clip(values, -largest, largest).astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def naive_centred_codes(x: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bits ``(n, ceil(d / 8)) uint8`` of ``x > centre`` and factors ``(n, 2) uint16``.

    ``r = x - centre`` in float64; ``f = |r|^2 / |r|_1`` (0 when ``r = 0``) and ``g = r . centre``,
    each summed from 0 in dimension order (``np.add.accumulate``), then rounded to bfloat16.
    """
    bits = np.packbits(x > centre, axis=1)
    r = x.astype(np.float64) - centre.astype(np.float64)

    def total(terms: np.ndarray) -> np.ndarray:  # 0.0 + t_0 + t_1 + ..., left to right
        return np.add.accumulate(np.hstack([np.zeros((len(terms), 1)), terms]), axis=1)[:, -1]

    squares, absolutes, along = total(r * r), total(np.abs(r)), total(r * centre.astype(np.float64))
    f = np.divide(squares, absolutes, out=np.zeros_like(squares), where=absolutes > 0)
    return bits, np.stack([naive_bfloat16(f), naive_bfloat16(along)], axis=1)


def naive_digit_values(planes: np.ndarray) -> np.ndarray:
    """``(q, 8 nbytes) int64`` values of queries held as ``planes (q, 2 m, nbytes) uint8``: plane
    ``2 k`` has the bits whose digit ``k`` is +1, plane ``2 k + 1`` those whose digit is -1, and a
    value is ``sum_k 3^k digit_k``. Raises if a bit is in both planes of a digit."""
    values = 0
    for k in range(planes.shape[1] // 2):
        plus, minus = (np.unpackbits(planes[:, 2 * k + i], axis=1).astype(np.int64) for i in (0, 1))
        if (plus & minus).any():
            raise ValueError(f"digit {k} has a bit set in both its planes")
        values = values + 3**k * (plus - minus)
    return values


def naive_coarse_totals(planes: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """``(q, n) float32`` totals ``t = sum_j u_j b_j`` of ternary queries held as ``planes (q, 2,
    nbytes) uint8`` against every row of ``bits (n, nbytes) uint8``: what the coarse scan ranks
    rows by."""
    unpacked = np.unpackbits(bits, axis=1).astype(np.int64)
    return (naive_digit_values(planes) @ unpacked.T).astype(np.float32)


def naive_asymmetric_scores(
    planes: np.ndarray,
    scales: np.ndarray,
    shifts: np.ndarray,
    alphas: np.ndarray,
    bits: np.ndarray,
    factors: np.ndarray | None,
) -> np.ndarray:
    """``(q, n) float32`` asymmetric scores of every row of ``bits (n, nbytes) uint8``.

    ``planes (q, 2 m, nbytes) uint8`` hold the queries' values in ``m`` balanced-ternary digits
    (:func:`naive_digit_values`): 3 for signed 4-bit queries, 1 for ternary ones. The integer ``t = sum_j w_j b_j`` is built from the unpacked
    values and bits, and turned into ``scale * t + shift`` and, with ``factors (n, 2) uint16``
    (bfloat16 ``f, g``), ``f * s + alpha * g``: the same float32 operations as the kernels, in
    the same order.
    """
    unpacked = np.unpackbits(bits, axis=1).astype(np.int64)
    t = naive_digit_values(planes) @ unpacked.T
    scores = scales[:, None] * t.astype(np.float32) + shifts[:, None]
    if factors is not None:
        f, g = ((factors[:, i].astype(np.uint32) << 16).view(np.float32) for i in range(2))
        scores = f[None, :] * scores + alphas[:, None] * g[None, :]
    return scores.astype(np.float32)
