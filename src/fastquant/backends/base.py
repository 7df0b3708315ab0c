"""The interface every Hamming top-k backend implements, and exact tie order for libraries.

A backend answers ``topk(corpus_bits, query_bits, k, threads)`` with the first ``k`` entries of a
stable sort of each query's distance row: ascending distance, equal distances by ascending id.
A backend may also offer ``topk_chunks(chunks, query_bits, k, threads)``, the same over the rows of
several arrays in order with global ids; without it a chunked corpus is searched chunk by chunk
and the lists merged (``fastquant.search.hamming_candidates``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np

#: ``search(rows, k_request) -> (distances, ids)``: a library's top-``k_request`` of the queries
#: ``rows (m,) int64``, as ``(m, k_request)`` arrays with equal distances in any order.
LibrarySearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@runtime_checkable
class HammingBackend(Protocol):
    """An exact Hamming top-k engine, registered by ``name``."""

    name: str

    def topk(
        self, corpus_bits: np.ndarray, query_bits: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of each query: ``distances (q, k) int32`` ascending, ``ids (q, k) int64``.

        Inputs are already validated: ``corpus_bits (n, nbytes) uint8`` and ``query_bits
        (q, nbytes) uint8``, both C-contiguous (possibly read-only or memory-mapped), bits packed
        MSB-first as by ``np.packbits``; ``1 <= k <= n``; ``threads >= 1`` caps the threads used.
        """
        ...


def exact_ties(search: LibrarySearch, q: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k with ties by ascending id from a ``search`` that breaks ties arbitrarily.

    ``search`` must return the true ``k_request`` smallest distances of each query. Once a row's
    k-th smallest distance is below its largest returned one, every item at a distance up to the
    k-th was returned (a missing one would have ranked ahead of the largest), so sorting the row by
    ``(distance, id)`` and keeping ``k`` is exact. Rows still tied at the boundary are searched
    again with ``k_request`` doubled, up to ``n``, when everything is returned. Asking ``k + 1``
    first settles most rows in one search. Returns ``(q, k) int32`` distances, ``(q, k) int64`` ids.
    """
    out_dist = np.empty((q, k), dtype=np.int32)
    out_ids = np.empty((q, k), dtype=np.int64)
    rows = np.arange(q, dtype=np.int64)
    k_request = min(k + 1, n)
    while rows.size:
        dist, ids = search(rows, k_request)
        dist = dist.astype(np.int32, copy=False)
        ids = ids.astype(np.int64, copy=False)
        order = np.lexsort((ids, dist))
        dist = np.take_along_axis(dist, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        done = dist[:, k - 1] < dist[:, -1] if k_request < n else np.ones(rows.size, dtype=bool)
        out_dist[rows[done]] = dist[done, :k]
        out_ids[rows[done]] = ids[done, :k]
        rows = rows[~done]
        k_request = min(2 * k_request, n)
    return out_dist, out_ids


def import_library(module: str, backend: str, package: str) -> ModuleType:
    """Import an optional library, or raise ImportError naming the extra that installs it."""
    try:
        return import_module(module)
    except ImportError as error:
        raise ImportError(
            f"the {backend!r} backend needs {package}: pip install 'fastquant[{backend}]'"
        ) from error
