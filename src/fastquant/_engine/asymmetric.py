"""The asymmetric first stage: stored 1-bit codes scored against 4-bit queries.

The estimator (RaBitQ's, with the query centred by projection):

- a row ``x`` is stored as the bits ``b = (x > c)`` of its residual ``r = x - c`` from the
  corpus centre ``c`` (``c = 0``: plain sign bits), with two factors ``f = |r|^2 / |r|_1`` and
  ``g = r . c`` (none for plain sign bits: ``f = 1``, ``g = 0``);
- a query ``q`` loses its component along ``c``: ``alpha = (q . c) / |c|^2``, ``q' = q - alpha c``,
  then ``q'`` is quantized to signed 4 bits per dimension, ``q' ~ delta * w`` with ``w`` in
  ``-8..7``, the scale ``delta`` chosen per query for the least squared error among ranges of
  40% to 100% of ``max |q'|``; ``w`` is held as its three balanced-ternary digits, two
  bit-planes each (``_kernels.bitplanes``);
- ``t = sum_j w_j b_j`` is integer popcount work (``_kernels.asymmetric``), and
  ``q' . (2b - 1) ~ delta * (2 t - sum_j w_j)``;
- ``q . x = q' . r + alpha (r . c) + q . c ~ f * (q' . (2b - 1)) + alpha * g + q . c``.

Rows are ranked by the score ``f * s + alpha * g`` (``s`` the estimate of ``q' . (2b - 1)``),
which the kernels compute in float32: an estimate of ``q . x`` less the per-query constant
``q . c``. Equal scores are ordered by ascending id. Query preparation (``_kernels/queries.py``) is float64, query by query, so a
query's planes and constants do not depend on the batch it comes in.
"""

from __future__ import annotations

import mmap
import weakref
from dataclasses import dataclass, fields

import numpy as np

from .._kernels import asymmetric as kernels
from .._kernels import config
from .._kernels import queries as query_kernels
from .._kernels.bitplanes import COARSE_PLANES, COARSE_WEIGHTS, PLANE_WEIGHTS, PLANES
from .corpus import ChunkedCorpus, chunk_segments
from .scan import merge_sorted

#: Fractions of ``max |q'|`` tried as the quantization range; the least squared error wins.
_RANGE_FRACTIONS = np.linspace(0.4, 1.0, 13)
#: Fractions of ``rms(q')`` tried as the ternary query's threshold; the least squared error wins.
_THRESHOLD_FRACTIONS = np.linspace(0.2, 1.5, 27)
#: Engines of the asymmetric scan: fastquant's kernel and its NumPy reference.
ASYMMETRIC_BACKENDS = ("numba", "numpy")


@dataclass(frozen=True)
class PlaneQueries:
    """Queries prepared for the asymmetric scan.

    ``planes (q, 6, ceil(d / 8)) uint8``: the planes ``P_0, N_0, P_1, N_1, P_2, N_2`` of the
    balanced-ternary digits of ``w`` (``_kernels.bitplanes``), packed MSB first;
    ``scales``, ``shifts``, ``alphas`` ``(q,) float32``: ``2 delta``, ``-delta * sum_j w_j`` and
    ``alpha``; ``coarse_planes (q, 2, ceil(d / 8)) uint8``: the planes of the ternary query of
    the coarse scan (``_kernels.queries.plane_queries``), which ranks rows by their integer total
    against it alone.
    """

    planes: np.ndarray
    scales: np.ndarray
    shifts: np.ndarray
    alphas: np.ndarray
    coarse_planes: np.ndarray

    @property
    def count(self) -> int:
        return self.scales.shape[0]

    def kernel_arguments(self, coarse: bool) -> tuple[np.ndarray, ...]:
        """``planes_flat, scales, shifts, alphas`` of the 4-bit queries, or with ``coarse`` the
        ternary queries' planes and the same constants (which their totals do not use)."""
        planes = self.planes
        if coarse:
            if self.coarse_planes.shape[0] != self.count:
                raise ValueError("these queries were prepared without their ternary form")
            planes = self.coarse_planes
        return planes.reshape(-1), self.scales, self.shifts, self.alphas

    def __getitem__(self, rows: slice) -> PlaneQueries:
        """The queries of ``rows``, e.g. ``planes[lo:hi]``."""
        return PlaneQueries(*(getattr(self, field.name)[rows] for field in fields(self)))


def centred_queries(queries: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``q' (q, d) float32`` and ``alpha (q,) float32``: the float (unquantized) query side."""
    projected = np.empty_like(queries)
    alphas = np.empty(queries.shape[0], dtype=np.float32)
    query_kernels.centred_queries(queries, centre, projected, alphas)
    return projected, alphas


def plane_queries(
    queries: np.ndarray, centre: np.ndarray | None, coarse: bool = True
) -> PlaneQueries:
    """Prepare validated ``queries (q, d) float32`` for a corpus centred at ``centre (d,)``
    (``_kernels.queries``); without ``coarse``, not their ternary form (its arrays are empty)."""
    q, d = queries.shape
    centre = np.zeros(d, np.float32) if centre is None else centre
    nbytes = (d + 7) // 8
    q_coarse = q if coarse else 0
    planes = np.zeros((q, PLANES, nbytes), dtype=np.uint8)
    coarse_planes = np.zeros((q_coarse, COARSE_PLANES, nbytes), dtype=np.uint8)
    scales, shifts, alphas = (np.empty(q, dtype=np.float32) for _ in range(3))
    query_kernels.plane_queries(
        queries, centre, _RANGE_FRACTIONS, _THRESHOLD_FRACTIONS, planes, scales, shifts, alphas,
        coarse_planes,
    )  # fmt: skip
    return PlaneQueries(planes, scales, shifts, alphas, coarse_planes)


def asymmetric_keys(
    corpus: ChunkedCorpus,
    queries: PlaneQueries,
    k: int,
    backend: str,
    threads: int,
    coarse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Global top ``min(k, searchable rows)`` by asymmetric score (``coarse``: by the integer
    total against the ternary queries): ``keys (q, k') float32`` ascending, the negated scores,
    and ``ids (q, k') int64`` (positions), ties by ascending id."""
    k = min(k, corpus.searchable_rows)
    if backend != "numba":
        return _numpy_topk(corpus, queries, k, coarse)
    if coarse:
        return _numba_coarse(corpus, queries, k, threads)
    return _numba_exact(corpus, queries, k, threads)


def _parallel(corpus: ChunkedCorpus, queries: PlaneQueries, planes: int, threads: int) -> bool:
    """Whether a scan of ``planes`` planes a query is worth more than one thread."""
    work = corpus.rows * queries.planes.shape[2] * planes * queries.count
    return threads > 1 and work >= config.PARALLEL_MIN_WORK_BYTES


def _numba_exact(corpus: ChunkedCorpus, queries: PlaneQueries, k: int, threads: int):
    nbytes = queries.planes.shape[2]
    addresses, factor_addresses, rows, allow_addresses = corpus.chunk_addresses
    bounds = chunk_factor_bounds(corpus)
    out_keys = np.empty((queries.count, k), dtype=np.float32)
    out_ids = np.empty((queries.count, k), dtype=np.int64)
    arguments = queries.kernel_arguments(False)
    if not _parallel(corpus, queries, PLANES, threads):
        kernels.asymmetric_topk_serial(
            addresses, factor_addresses, bounds, rows, allow_addresses, *arguments, nbytes, k,
            config.PREFETCH_BYTES, out_keys, out_ids,
        )  # fmt: skip
        return out_keys, out_ids
    with config.numba_threads(threads) as used:
        kernels.asymmetric_topk_parallel(
            addresses, factor_addresses, bounds, rows, allow_addresses, *arguments, nbytes, k, used,
            config.PREFETCH_BYTES, out_keys, out_ids,
        )  # fmt: skip
    return out_keys, out_ids


def _numba_coarse(corpus: ChunkedCorpus, queries: PlaneQueries, k: int, threads: int):
    """Keys ``-t`` (float32, exact) and ids of the coarse scan."""
    nbytes = queries.planes.shape[2]
    addresses, _, rows, allow_addresses = corpus.chunk_addresses
    out_keys = np.empty((queries.count, k), dtype=np.int32)
    out_ids = np.empty((queries.count, k), dtype=np.int64)
    planes = queries.kernel_arguments(True)[0]
    if not _parallel(corpus, queries, COARSE_PLANES, threads):
        kernels.coarse_topk_serial(
            addresses, rows, allow_addresses, planes, nbytes, k, config.PREFETCH_BYTES, out_keys,
            out_ids,
        )  # fmt: skip
    else:
        with config.numba_threads(threads) as used:
            kernels.coarse_topk_parallel(
                addresses, rows, allow_addresses, planes, nbytes, k, used, config.PREFETCH_BYTES,
                out_keys, out_ids,
            )  # fmt: skip
    return -(-out_keys).astype(np.float32), out_ids  # keys are negated scores: -0.0 for t = 0


#: ``factor_bounds`` of read-only factor arrays (a store's maps), by ``id`` while they live.
_BOUNDS_OF_MAPS: dict[int, np.ndarray] = {}
#: ``chunk_factor_bounds`` of corpora whose factors are all such maps, by ``id`` while they live.
_BOUNDS_OF_CORPORA: dict[int, np.ndarray] = {}


def chunk_factor_bounds(corpus: ChunkedCorpus) -> np.ndarray:
    """``(chunks, 4) float64``: each chunk's least and greatest row factors ``f``, ``g``
    (``_kernels.asymmetric.factor_bounds``), ``1, 1, 0, 0`` without factors.

    A store's factors are read-only maps of committed rows, which never change, so their bounds
    are computed once (one read of 4 bytes a row); other arrays are read again at every search.
    """
    if not corpus.factors:
        return np.tile(np.array([1.0, 1.0, 0.0, 0.0]), (len(corpus.bits), 1))
    key = id(corpus)
    bounds = _BOUNDS_OF_CORPORA.get(key)
    if bounds is None:
        bounds = np.stack([_factor_bounds(factors) for factors in corpus.factors])
        if all(_is_map(factors) for factors in corpus.factors):
            _BOUNDS_OF_CORPORA[key] = bounds
            weakref.finalize(corpus, _BOUNDS_OF_CORPORA.pop, key, None)
    return bounds


def _is_map(array: np.ndarray) -> bool:
    """Whether ``array`` is a read-only view of an ``mmap`` (a store's committed rows)."""
    return not array.flags.writeable and isinstance(_buffer_of(array), mmap.mmap)


def _factor_bounds(factors: np.ndarray) -> np.ndarray:
    if not _is_map(factors):
        return kernels.factor_bounds(factors.reshape(-1).view(np.uint32))
    key = id(factors)
    bounds = _BOUNDS_OF_MAPS.get(key)
    if bounds is None:
        bounds = kernels.factor_bounds(factors.reshape(-1).view(np.uint32))
        _BOUNDS_OF_MAPS[key] = bounds
        weakref.finalize(factors, _BOUNDS_OF_MAPS.pop, key, None)
    return bounds


def _buffer_of(array: np.ndarray) -> object:
    """The object at the bottom of ``array``'s chain of bases."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


#: Rows the NumPy engine unpacks at a time.
_NUMPY_ROWS = 1 << 14


def reference_scores(
    bits: np.ndarray, factors: np.ndarray | None, queries: PlaneQueries, coarse: bool = False
) -> np.ndarray:
    """``(q, n) float32`` scores of every row of ``bits (n, nbytes) uint8``, in NumPy, with the
    float32 operations of the kernel in the same order; ``coarse``: the integer totals against
    the ternary queries, which the coarse scan ranks by."""
    d = 8 * bits.shape[1]
    unpacked = np.unpackbits(bits, axis=1)[:, :d].T.astype(np.float64)
    planes = queries.coarse_planes if coarse else queries.planes
    t = sum(
        weight * np.rint(np.unpackbits(planes[:, p], axis=1)[:, :d] @ unpacked)
        for p, weight in enumerate(COARSE_WEIGHTS if coarse else PLANE_WEIGHTS)
    ).astype(np.int64)
    if coarse:
        return t.astype(np.float32)
    scores = queries.scales[:, None] * t.astype(np.float32) + queries.shifts[:, None]
    if factors is not None:
        f, g = (bfloat16_to_float32(factors[:, i]) for i in range(2))
        scores = f[None, :] * scores + queries.alphas[:, None] * g[None, :]
    return scores.astype(np.float32)


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """``uint16`` bfloat16 patterns as float32 values."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _numpy_topk(corpus: ChunkedCorpus, queries: PlaneQueries, k: int, coarse: bool):
    """The NumPy engine: chunks of rows scored with :func:`reference_scores`, rows not allowed
    dropped, lists merged."""
    keys, ids = [], []
    for c, (bits, offset) in enumerate(zip(corpus.bits, corpus.offsets)):
        factors = corpus.factors[c] if corpus.factors else None
        bitmap = corpus.chunk_allowed(c)
        allowed = None
        if bitmap is not None:
            allowed = np.unpackbits(bitmap, count=bits.shape[0], bitorder="little").view(bool)
        for lo in range(0, bits.shape[0], _NUMPY_ROWS):
            part = slice(lo, lo + _NUMPY_ROWS)
            negated = -reference_scores(
                bits[part], None if factors is None else factors[part], queries, coarse
            )
            kept = np.arange(negated.shape[1]) if allowed is None else np.flatnonzero(allowed[part])
            if not kept.size:
                continue
            negated = negated[:, kept]
            order = np.argsort(negated, axis=1, kind="stable")[:, :k]
            keys.append(np.take_along_axis(negated, order, axis=1))
            ids.append(kept[order] + offset + lo)
    return merge_sorted(keys, ids, k, np.float32(np.inf))


def score_asymmetric(
    corpus: ChunkedCorpus, queries: PlaneQueries, candidates: np.ndarray, coarse: bool = False
) -> np.ndarray:
    """Asymmetric scores ``(q, c) float32`` of ``candidates (q, c) int64`` (``coarse``: their
    integer totals against the ternary queries): what that scan ranks those rows by. Ids outside
    ``[0, rows)`` are skipped."""
    scores = np.empty(candidates.shape, dtype=np.float32)
    flat, per_query = scores.reshape(-1), candidates.shape[1]
    arguments = queries.kernel_arguments(coarse)
    nbytes = queries.planes.shape[2]
    for c, rows, slots in chunk_segments(candidates, corpus.offsets):
        factors = corpus.factors[c] if corpus.factors else np.empty((0, 2), np.uint16)
        kernels.score_asymmetric_slots(
            *arguments, nbytes, coarse, corpus.bits[c], factors, bool(corpus.factors), rows, slots,
            per_query, flat,
        )  # fmt: skip
    return scores
