"""Rescoring: float32 queries against the int8 codes or packed bits of candidate rows, and exact int8 search.

Scores are dot products with the dequantized codes (``start + (code + 128) * step`` per
dimension) or, for bits, the BPR form ``q . (2b - 1)``. Results are ordered by descending score,
equal scores by ascending id. Queries whose scores could overflow float32 are refused
(``ValueError``), as are NaN/Inf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _engine, validation
from .quantize import Calibration


def _top(scores: np.ndarray, ids: np.ndarray, k: Any) -> tuple[np.ndarray, np.ndarray]:
    keep = ids.shape[1] if k is None else min(validation.positive_int("k", k), ids.shape[1])
    return _engine.top_by_score(scores, ids, keep)


def rescore_int8(
    codes_i8: np.ndarray,
    query_f32: np.ndarray,
    candidate_ids: np.ndarray,
    k: int | None = None,
    *,
    calibration: Calibration | np.ndarray,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score each query's candidates against their dequantized int8 codes and keep the best ``k``.

    Args:
        codes_i8: ``(n, d) int8`` codes of the whole corpus; may be memory-mapped.
        query_f32: ``(q, d)`` float queries (or one ``(d,)`` row).
        candidate_ids: ``(q, c)`` row ids per query, e.g. Hamming top ``k * rescore_multiplier``.
        k: rows to keep per query; default all ``c``.
        calibration: the :class:`Calibration` (or its ``(2, d)`` ranges) the codes were made with.
        threads: threads for large batches; default all cores (small jobs use one).

    Returns:
        ``scores (q, min(k, c)) float32`` descending and ``ids (q, min(k, c)) int64``.
    """
    calibration = validation.as_calibration(calibration)
    codes = validation.as_int8_codes(codes_i8, calibration)
    queries = validation.as_queries(
        query_f32, calibration.dim, bound=validation.int8_bound(calibration)
    )
    ids = validation.as_candidate_ids(candidate_ids, queries.shape[0], codes.shape[0])
    threads = validation.thread_count(threads)
    corpus = _engine.ChunkedCorpus.of_arrays(calibration.dim, codes=codes, calibration=calibration)
    scores = _engine.score_int8(corpus, queries, ids, threads=threads, prefetch=False)
    return _top(scores, ids, k)


def rescore_bits(
    corpus_bits: np.ndarray,
    query_f32: np.ndarray,
    candidate_ids: np.ndarray,
    k: int | None = None,
    *,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score each query's candidates as ``q . (2b - 1)`` against their packed bits (BPR rescoring).

    ``corpus_bits (n, ceil(d / 8))``: ``uint8`` (``ubinary``) or sentence-transformers' signed
    ``int8`` (``binary``) codes, read as the bits they stand for. Other arguments and results as
    :func:`rescore_int8`.
    """
    bits, signed = validation.as_bit_rows("corpus_bits", corpus_bits)
    query = validation.to_numpy(query_f32)
    dim = query.shape[-1] if query.ndim else 0
    if (dim + 7) // 8 != bits.shape[1]:
        raise ValueError(
            f"query_f32 has dimension {dim}, which does not pack into {bits.shape[1]} bytes per row"
        )
    queries = validation.as_queries(query, dim)
    ids = validation.as_candidate_ids(candidate_ids, queries.shape[0], bits.shape[0])
    threads = validation.thread_count(threads)
    corpus = _engine.ChunkedCorpus.of_arrays(dim, bits=bits, bits_flip=0x80 if signed else 0)
    return _top(_engine.score_bits(corpus, queries, ids, threads=threads), ids, k)


def int8_topk(
    codes_i8: np.ndarray,
    query_f32: np.ndarray,
    k: int,
    *,
    calibration: Calibration | np.ndarray,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over all int8 codes by dequantized dot product (no binary pre-filter).

    Returns ``scores (q, min(k, n)) float32`` descending and ``ids (q, min(k, n)) int64``.
    """
    calibration = validation.as_calibration(calibration)
    codes = validation.as_int8_codes(codes_i8, calibration)
    queries = validation.as_queries(
        query_f32, calibration.dim, bound=validation.int8_bound(calibration)
    )
    k = validation.positive_int("k", k)
    threads = validation.thread_count(threads)
    corpus = _engine.ChunkedCorpus.of_arrays(calibration.dim, codes=codes, calibration=calibration)
    return _engine.exact_int8(corpus, queries, k, threads)
