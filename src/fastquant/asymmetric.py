"""Asymmetric top-k: stored 1-bit codes scored against the float query quantized to 4 bits.

``hamming_topk`` compares the query's sign bits with the rows'; ``asymmetric_topk`` keeps 4 bits
per query dimension (as bit-planes, so scoring is still AND + popcount over the same packed bytes)
and, given the rows' factors from :func:`fastquant.centred_bits`, estimates ``q . x`` the way
RaBitQ does. On real sentence embeddings its candidates keep far more of the true neighbours
(``docs/benchmarks.md``). The estimator and its derivation: ``fastquant._engine.asymmetric``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _engine, validation


def asymmetric_topk(
    corpus_bits: np.ndarray,
    query_f32: np.ndarray,
    k: int,
    *,
    centre: Any | None = None,
    factors: np.ndarray | None = None,
    backend: str = _engine.DEFAULT_BACKEND,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best corpus rows of each query by asymmetric score.

    Args:
        corpus_bits: ``(n, ceil(d / 8)) uint8`` packed bits, MSB first: plain sign bits
            (``quantize_embeddings(x, "ubinary")``), or the centred bits of
            :func:`fastquant.centred_bits`; memory-mapped arrays are scanned in place.
        query_f32: ``(q, d)`` float queries (or one ``(d,)`` row).
        k: rows per query; ``k > n`` returns all ``n``.
        centre, factors: the ``(d,)`` centre and the ``(n, 2) uint16`` row factors the centred
            bits were made with (both or neither).
        backend: ``"numba"`` (fastquant's kernel) or ``"numpy"`` (its reference engine).
        threads: threads for this call; default all cores.

    Returns:
        ``scores (q, min(k, n)) float32`` descending and ``ids (q, min(k, n)) int64``, equal
        scores by ascending id. With factors a score estimates ``q . x - q . centre``; without,
        ``q . (2b - 1)`` for the sign bits ``b``. Queries whose scores could overflow float32
        are refused.
    """
    bits, signed = validation.as_bit_rows("corpus_bits", corpus_bits)
    if signed:
        raise TypeError(
            "asymmetric_topk scores packed bits as uint8 (np.packbits, precision='ubinary'); "
            "convert sentence-transformers' signed 'binary' codes with codes.view(np.uint8) ^ 0x80"
        )
    query = validation.to_numpy(query_f32)
    dim = query.shape[-1] if query.ndim else 0
    if (dim + 7) // 8 != bits.shape[1]:
        raise ValueError(
            f"query_f32 has dimension {dim}, which does not pack into {bits.shape[1]} bytes per row"
        )
    if (centre is None) != (factors is None):
        raise ValueError("centre and factors come together (fastquant.centred_bits makes both)")
    centre_array = None if centre is None else validation.as_centre(centre, dim)
    factor_rows = None if factors is None else _as_factors(factors, bits.shape[0])
    queries = validation.as_queries(query, dim, bound=validation.row_bound(dim, None, centre_array))
    k = validation.positive_int("k", k)
    backend = validation.choice("backend", backend, _engine.ASYMMETRIC_BACKENDS)
    threads = validation.thread_count(threads)
    corpus = _engine.ChunkedCorpus.of_arrays(
        dim, bits=bits, centre=centre_array, factors=factor_rows
    )
    return _engine.candidates(corpus, queries, k, "asymmetric-exact", backend, threads)


def _as_factors(factors: Any, rows: int) -> np.ndarray:
    """``factors (rows, 2) uint16`` (bfloat16 ``f, g`` per row) as a C-contiguous array."""
    factors = validation.to_numpy(factors)
    if factors.dtype != np.uint16:
        raise TypeError(
            f"factors must be the (n, 2) uint16 array of fastquant.centred_bits, got dtype "
            f"{factors.dtype}"
        )
    if factors.shape != (rows, 2):
        raise ValueError(
            f"factors must have shape ({rows}, 2), one row per corpus row; got {factors.shape}"
        )
    return np.ascontiguousarray(factors)
