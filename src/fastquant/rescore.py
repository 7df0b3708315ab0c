"""Rescoring: float32 queries against the int8 codes or packed bits of candidate rows, and exact int8 search.

Scores are dot products with the dequantized codes (``start + (code + 128) * step`` per
dimension) or, for bits, the BPR form ``q . (2b - 1)``. Results are ordered by descending score,
equal scores by ascending id.
"""

from __future__ import annotations

import numpy as np

from ._kernels import config
from ._kernels import rescore as kernels
from .hamming import as_bit_matrix
from .quantize import Calibration
from .validation import require_dim, require_finite_float_matrix, require_positive_k


def as_queries(query_f32: np.ndarray, dim: int) -> np.ndarray:
    """Validate float queries ``(q, dim)`` (or one ``(dim,)`` row) as C-contiguous float32."""
    query = np.asarray(query_f32)
    if query.ndim == 1:
        query = query[None, :]
    query = require_finite_float_matrix("query_f32", query)
    require_dim("query_f32", query, dim)
    return np.ascontiguousarray(query, dtype=np.float32)


def as_codes(codes_i8: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Validate int8 codes ``(n, d)``, as produced by ``quantize_embeddings(..., "int8")``."""
    if not isinstance(codes_i8, np.ndarray) or codes_i8.dtype != np.int8:
        got = codes_i8.dtype if isinstance(codes_i8, np.ndarray) else type(codes_i8).__name__
        raise TypeError(f"codes_i8 must be an int8 numpy array (precision='int8'), got {got}")
    if codes_i8.ndim != 2 or codes_i8.size == 0:
        raise ValueError(
            f"codes_i8 must be a non-empty 2-D (rows, dim) array, got shape {codes_i8.shape}"
        )
    if dim is not None:
        require_dim("codes_i8", codes_i8, dim)
    return np.ascontiguousarray(codes_i8)


def as_calibration(calibration: Calibration | np.ndarray) -> Calibration:
    """A :class:`Calibration`, or ``(2, d)`` ranges to build one from."""
    return (
        calibration
        if isinstance(calibration, Calibration)
        else Calibration(np.asarray(calibration))
    )


def as_candidates(candidate_ids: np.ndarray, q: int, n: int) -> np.ndarray:
    """Validate candidate row ids ``(q, c)``: integers in ``[0, n)``, no repeats within a row.

    Returned sorted per row, so rows are read from (possibly memory-mapped) codes in file order.
    """
    ids = np.asarray(candidate_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.dtype.kind not in "iu":
        raise TypeError(f"candidate_ids must be integer row ids, got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[0] != q or ids.shape[1] == 0:
        raise ValueError(f"candidate_ids must have shape ({q}, c) with c >= 1, got {ids.shape}")
    if ids.min() < 0 or ids.max() >= n:
        raise ValueError(
            f"candidate_ids must lie in [0, {n}), got values from {ids.min()} to {ids.max()}"
        )
    ids = np.sort(ids.astype(np.int64), axis=1)
    if ids.shape[1] > 1 and (ids[:, 1:] == ids[:, :-1]).any():
        raise ValueError("candidate_ids repeat a row id within one query")
    return ids


def prepare_queries(queries: np.ndarray, calibration: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """``queries (q, d) float32`` -> ``scaled (q, d) float32`` and ``constants (q,) float32`` for int8 scoring."""
    scaled = np.empty_like(queries)
    constants = np.empty(queries.shape[0], dtype=np.float32)
    kernels.prepare_queries(queries, calibration.starts, calibration.steps, scaled, constants)
    return scaled, constants


def query_totals(queries: np.ndarray) -> np.ndarray:
    """``(q,) float32`` sums of ``queries (q, d) float32``, the ``- sum(q)`` of bit scores."""
    return queries.sum(axis=1, dtype=np.float32)


def top_by_score(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k <= c`` of ``scores (q, c) float32, ids (q, c) int64``: score descending, then id."""
    out_scores = np.empty((ids.shape[0], k), dtype=np.float32)
    out_ids = np.empty((ids.shape[0], k), dtype=np.int64)
    kernels.top_scores(scores, ids, out_scores, out_ids)
    return out_scores, out_ids


def _top(scores: np.ndarray, ids: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    keep = ids.shape[1] if k is None else min(require_positive_k(k), ids.shape[1])
    return top_by_score(scores, ids, keep)


def rescore_int8(
    query_f32: np.ndarray,
    codes_i8: np.ndarray,
    candidate_ids: np.ndarray,
    calibration: Calibration | np.ndarray,
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score each query's candidates against their dequantized int8 codes and keep the best ``k``.

    Args:
        query_f32: ``(q, d)`` float queries (or one ``(d,)`` row).
        codes_i8: ``(n, d) int8`` codes of the whole corpus; may be memory-mapped.
        candidate_ids: ``(q, c)`` row ids per query, e.g. Hamming top ``k * rescore_multiplier``.
        calibration: the :class:`Calibration` (or its ``(2, d)`` ranges) the codes were made with.
        k: rows to keep per query; default all ``c``.

    Returns:
        ``scores (q, min(k, c)) float32`` descending and ``ids (q, min(k, c)) int64``.
    """
    calibration = as_calibration(calibration)
    queries = as_queries(query_f32, calibration.dim)
    codes = as_codes(codes_i8, calibration.dim)
    ids = as_candidates(candidate_ids, queries.shape[0], codes.shape[0])
    scaled, constants = prepare_queries(queries, calibration)
    slots = np.arange(ids.size, dtype=np.int64)
    scores = np.empty(ids.shape, dtype=np.float32)
    kernels.score_int8_slots(
        scaled, constants, codes, ids.reshape(-1), slots, ids.shape[1], scores.reshape(-1)
    )
    return _top(scores, ids, k)


def rescore_bits(
    query_f32: np.ndarray,
    corpus_bits: np.ndarray,
    candidate_ids: np.ndarray,
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score each query's candidates as ``q . (2b - 1)`` against their packed bits (BPR rescoring).

    ``corpus_bits (n, ceil(d / 8)) uint8``; other arguments and results as :func:`rescore_int8`.
    """
    bits = as_bit_matrix("corpus_bits", corpus_bits)
    query = np.asarray(query_f32)
    dim = query.shape[-1] if query.ndim else 0
    if (dim + 7) // 8 != bits.shape[1]:
        raise ValueError(
            f"query_f32 has dimension {dim}, which does not pack into {bits.shape[1]} bytes per row"
        )
    queries = as_queries(query, dim)
    ids = as_candidates(candidate_ids, queries.shape[0], bits.shape[0])
    slots = np.arange(ids.size, dtype=np.int64)
    scores = np.empty(ids.shape, dtype=np.float32)
    kernels.score_bit_slots(
        queries,
        query_totals(queries),
        bits,
        ids.reshape(-1),
        slots,
        ids.shape[1],
        scores.reshape(-1),
    )
    return _top(scores, ids, k)


def int8_topk(
    query_f32: np.ndarray,
    codes_i8: np.ndarray,
    calibration: Calibration | np.ndarray,
    k: int,
    *,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over all int8 codes by dequantized dot product (no binary pre-filter).

    Returns ``scores (q, min(k, n)) float32`` descending and ``ids (q, min(k, n)) int64``.
    """
    calibration = as_calibration(calibration)
    queries = as_queries(query_f32, calibration.dim)
    codes = as_codes(codes_i8, calibration.dim)
    k_eff = min(require_positive_k(k), codes.shape[0])
    threads = config.resolve_threads(threads)
    if codes.size * queries.shape[0] < config.PARALLEL_MIN_WORK_BYTES:
        threads = 1
    out_scores = np.empty((queries.shape[0], k_eff), dtype=np.float32)
    out_ids = np.empty((queries.shape[0], k_eff), dtype=np.int64)
    with config.numba_threads(threads) as used:
        kernels.int8_topk(
            queries, codes, calibration.starts, calibration.steps, k_eff, used, out_scores, out_ids
        )
    return out_scores, out_ids
