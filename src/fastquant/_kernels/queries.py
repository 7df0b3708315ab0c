"""Queries prepared for the asymmetric scan: centred by projection, quantized to 4-bit planes.

Every operation is float64 in a fixed order (no fastmath), one query at a time, so a query's
planes and constants depend neither on the batch it comes in nor on the process that compiled
the kernel (sharded searches compare scores across processes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bitplanes import PLANES
from .config import INLINE_KERNEL, KERNEL

#: Largest 4-bit level.
LEVELS = (1 << PLANES) - 1


@njit(**INLINE_KERNEL)
def _project(query, centre, centre_norm2, out):
    """``out (d,) float64 = query - alpha centre`` with ``alpha = (query . centre) / |centre|^2``
    (0 when the centre is 0); returns ``alpha``."""
    alpha = 0.0
    if centre_norm2 > 0:
        along = 0.0
        for j in range(query.shape[0]):
            along += np.float64(query[j]) * np.float64(centre[j])
        alpha = along / centre_norm2
    for j in range(query.shape[0]):
        out[j] = np.float64(query[j]) - alpha * np.float64(centre[j])
    return alpha


@njit(**INLINE_KERNEL)
def _norm2(centre):
    total = 0.0
    for j in range(centre.shape[0]):
        total += np.float64(centre[j]) * np.float64(centre[j])
    return total


@njit(**INLINE_KERNEL)
def _level(value, delta, offset):
    return min(max(np.rint(value / delta) + offset, 0.0), float(LEVELS))


@njit(**KERNEL)
def centred_queries(queries, centre, out_queries, out_alphas):
    """``out_queries (q, d) float32 = q - alpha centre`` and ``out_alphas (q,) float32``."""
    centre_norm2 = _norm2(centre)
    projected = np.empty(queries.shape[1], dtype=np.float64)
    for qi in range(queries.shape[0]):
        out_alphas[qi] = _project(queries[qi], centre, centre_norm2, projected)
        for j in range(queries.shape[1]):
            out_queries[qi, j] = projected[j]


@njit(**KERNEL)
def plane_queries(queries, centre, fractions, planes, offsets, scales, shifts, alphas):
    """Quantize each projected query ``q'`` to ``delta * (v - o)``, ``v`` in ``0..LEVELS``.

    The quantization range is ``fraction`` times the query's own ``[min, max]``, for the first
    of ``fractions (f,) float64`` with the least squared error; the integer offset ``o`` puts 0
    on the grid. Writes ``planes (q, PLANES, ceil(d / 8)) uint8`` (zeroed by the caller; bit
    ``p`` of every ``v_j``, MSB first), ``offsets (q,) int32`` = ``o``, ``scales (q,) float32`` =
    ``2 delta``, ``shifts (q,) float32`` = ``-delta * sum_j (v_j - o)`` and ``alphas``.
    """
    d = queries.shape[1]
    centre_norm2 = _norm2(centre)
    projected = np.empty(d, dtype=np.float64)
    for qi in range(queries.shape[0]):
        alphas[qi] = _project(queries[qi], centre, centre_norm2, projected)
        low, high = projected[0], projected[0]
        for j in range(d):
            low, high = min(low, projected[j]), max(high, projected[j])
        best_error, best_delta, best_offset = np.inf, 1.0, 0.0
        for fraction in fractions:
            delta = (high - low) * fraction / LEVELS
            if not delta > 0:
                delta = 1.0
            offset = min(max(np.rint(-low * fraction / delta), 0.0), float(LEVELS))
            error = 0.0
            for j in range(d):
                residual = projected[j] - delta * (_level(projected[j], delta, offset) - offset)
                error += residual * residual
            if error < best_error:
                best_error, best_delta, best_offset = error, delta, offset
        level_sum = 0
        for j in range(d):
            level = np.int64(_level(projected[j], best_delta, best_offset))
            level_sum += level - np.int64(best_offset)
            for p in range(PLANES):
                planes[qi, p, j >> 3] |= np.uint8(((level >> p) & 1) << (7 - (j & 7)))
        offsets[qi] = np.int32(best_offset)
        scales[qi] = np.float32(2.0 * best_delta)
        shifts[qi] = np.float32(-best_delta * level_sum)
