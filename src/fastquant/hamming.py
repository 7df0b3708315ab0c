"""Exact Hamming top-k over packed bits, on any backend, and cross-checks between backends.

Bits are packed 8 per byte, most significant bit first (``np.packbits``, sentence-transformers'
``ubinary``). Sentence-transformers' signed ``binary`` codes (``int8``) are accepted too: both
sides are shifted by the same 128, so their XOR, and every distance, is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _engine, validation
from .backends import available_backends, get_backend


def _validate(corpus_bits, query_bits, k) -> tuple[np.ndarray, np.ndarray, int]:
    corpus, corpus_signed = validation.as_bit_rows("corpus_bits", corpus_bits)
    queries, queries_signed = validation.as_bit_rows("query_bits", query_bits)
    if corpus_signed != queries_signed:
        dtypes = ("int8" if corpus_signed else "uint8", "int8" if queries_signed else "uint8")
        raise TypeError(
            f"corpus_bits ({dtypes[0]}) and query_bits ({dtypes[1]}) must be packed the same "
            "way: both uint8 ('ubinary') or both int8 ('binary')"
        )
    if corpus.shape[1] != queries.shape[1]:
        raise ValueError(
            f"dimension mismatch: corpus rows are {corpus.shape[1]} bytes "
            f"({8 * corpus.shape[1]} bits), queries are {queries.shape[1]} bytes "
            f"({8 * queries.shape[1]} bits)"
        )
    return corpus, queries, validation.positive_int("k", k)


def hamming_topk(
    corpus_bits: np.ndarray,
    query_bits: np.ndarray,
    k: int,
    *,
    backend: str = _engine.DEFAULT_BACKEND,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest corpus rows of each query by Hamming distance.

    Args:
        corpus_bits: ``(n, nbytes) uint8`` packed bits (or ``int8`` signed ``binary`` codes);
            memory-mapped and read-only arrays are scanned in place.
        query_bits: ``(q, nbytes)`` of the same dtype, or one ``(nbytes,)`` row.
        k: neighbours per query; ``k > n`` returns all ``n`` rows.
        backend: ``"numba"`` (fastquant's kernels), ``"numpy"`` (reference), ``"faiss"`` or ``"usearch"``.
        threads: threads for this call on every backend; default: all cores.

    Returns:
        ``distances (q, min(k, n)) int32`` ascending and ``ids (q, min(k, n)) int64``; equal
        distances are ordered by ascending id, so every backend returns identical arrays.
    """
    corpus, queries, k = _validate(corpus_bits, query_bits, k)
    threads = validation.thread_count(threads)
    # Signed codes are every byte minus 128 on both sides: their XOR, so every distance, is the same.
    chunked = _engine.ChunkedCorpus.of_arrays(8 * corpus.shape[1], bits=corpus)
    return _engine.hamming_candidates(chunked, queries, k, backend, threads)


@dataclass(frozen=True)
class BackendComparison:
    """Result of :func:`compare_backends`: which backends returned exactly the reference's arrays."""

    reference: str
    agree: tuple[str, ...]
    #: backend name -> human-readable description of its first difference from the reference
    mismatches: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def raise_if_mismatch(self) -> None:
        """Raise ``AssertionError`` describing every backend that disagreed."""
        if self.mismatches:
            details = "; ".join(f"{name}: {why}" for name, why in self.mismatches.items())
            raise AssertionError(f"backends disagree with {self.reference}: {details}")


def _first_difference(
    ref: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]
) -> str | None:
    for label, a, b in (("distances", ref[0], other[0]), ("ids", ref[1], other[1])):
        if a.shape != b.shape:
            return f"{label} shape {b.shape} != {a.shape}"
        diff = np.argwhere(a != b)
        if len(diff):
            q, j = diff[0]
            return (
                f"{len(diff)} {label} differ, first at query {q} rank {j}: {b[q, j]} != {a[q, j]}"
            )
    return None


def compare_backends(
    corpus_bits: np.ndarray,
    query_bits: np.ndarray,
    k: int,
    *,
    backends: Sequence[str] | None = None,
    reference: str = "numba",
    threads: int | None = None,
) -> BackendComparison:
    """Run the same exact search on several backends and report any difference from ``reference``.

    Use it on your own data to cross-check fastquant's kernels against faiss and usearch:
    ``compare_backends(corpus_bits, query_bits, 10).raise_if_mismatch()``. ``backends``
    defaults to every installed backend.
    """
    names = validation.names("backends", backends) if backends is not None else available_backends()
    for name in [reference, *names]:
        get_backend(name)  # fail on an unknown or uninstalled backend before any search runs
    expected = hamming_topk(corpus_bits, query_bits, k, backend=reference, threads=threads)
    agree, mismatches = [reference], {}
    for name in names:
        if name == reference:
            continue
        difference = _first_difference(
            expected, hamming_topk(corpus_bits, query_bits, k, backend=name, threads=threads)
        )
        if difference is None:
            agree.append(name)
        else:
            mismatches[name] = difference
    return BackendComparison(reference=reference, agree=tuple(agree), mismatches=mismatches)
