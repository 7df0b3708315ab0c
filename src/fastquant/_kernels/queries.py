"""Queries prepared for the asymmetric scan: centred by projection, quantized to 4 bits, held
as the bit-planes of their balanced-ternary digits.

Every operation is float64 in a fixed order (no fastmath), one query at a time, so a query's
planes and constants depend neither on the batch it comes in nor on the process that compiled
the kernel (sharded searches compare scores across processes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bitplanes import PLANES, QUERY_BITS
from .config import INLINE_KERNEL, KERNEL

#: The signed 4-bit levels.
LOWEST, HIGHEST = -(1 << (QUERY_BITS - 1)), (1 << (QUERY_BITS - 1)) - 1


def _balanced_ternary(level: int, digits: int) -> list[int]:
    """The ``digits`` balanced-ternary digits (in -1..1, least significant first) of ``level``."""
    out = []
    for _ in range(digits):
        digit = (level + 1) % 3 - 1
        out.append(digit)
        level = (level - digit) // 3
    return out


#: ``(HIGHEST - LOWEST + 1, PLANES // 2) int64``: the digits of every level, from ``LOWEST``.
_DIGITS = np.array(
    [_balanced_ternary(level, PLANES // 2) for level in range(LOWEST, HIGHEST + 1)], dtype=np.int64
)


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
def _level(value, delta):
    return min(max(np.rint(value / delta), float(LOWEST)), float(HIGHEST))


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
def plane_queries(
    queries, centre, fractions, coarse_fractions, planes, scales, shifts, alphas, coarse_planes
):  # fmt: skip
    """Quantize each projected query ``q'`` to ``delta * w``, ``w`` in ``LOWEST..HIGHEST``.

    ``delta`` is ``fraction * max|q'| / (HIGHEST + 0.5)``, for the first of ``fractions (f,)
    float64`` with the least squared error. Writes ``planes (q, PLANES, ceil(d / 8)) uint8``
    (zeroed by the caller; bit ``j`` of plane ``2 k`` (``2 k + 1``) set where the balanced-ternary
    digit ``k`` of ``w_j`` is 1 (-1), MSB first), ``scales (q,) float32`` =
    ``2 delta``, ``shifts (q,) float32`` = ``-delta * sum_j w_j`` and ``alphas (q,) float32``.

    The coarse (ternary) query: ``q' ~ lam * u``, ``u_j = sign(q'_j)`` where ``|q'_j| > theta``
    and 0 elsewhere, ``lam`` the mean ``|q'_j|`` above ``theta``, for the first ``theta = fraction
    * rms(q')`` of ``coarse_fractions`` with the least squared error; ``coarse_planes (q,
    COARSE_PLANES, ceil(d / 8)) uint8`` (zeroed by the caller) hold the bits of ``u_j = 1`` and
    of ``u_j = -1``; none when ``coarse_planes`` has no rows. The coarse scan ranks rows by
    ``sum_j u_j b_j`` alone, so ``lam`` only chooses ``theta``.
    """
    d = queries.shape[1]
    centre_norm2 = _norm2(centre)
    projected = np.empty(d, dtype=np.float64)
    deltas, errors = np.empty(fractions.shape[0]), np.empty(fractions.shape[0])
    candidates = np.empty((4, coarse_fractions.shape[0]))
    for qi in range(queries.shape[0]):
        alphas[qi] = _project(queries[qi], centre, centre_norm2, projected)
        largest = 0.0
        for j in range(d):
            largest = max(largest, abs(projected[j]))
        for f in range(fractions.shape[0]):
            delta = largest * fractions[f] / (HIGHEST + 0.5)
            deltas[f] = delta if delta > 0 else 1.0
            errors[f] = 0.0
        # Every candidate's error is summed over j in order, all candidates in one pass.
        for j in range(d):
            value = projected[j]
            for f in range(deltas.shape[0]):
                residual = value - deltas[f] * _level(value, deltas[f])
                errors[f] += residual * residual
        best_error, best_delta = np.inf, 1.0
        for f in range(deltas.shape[0]):
            if errors[f] < best_error:
                best_error, best_delta = errors[f], deltas[f]
        level_sum = 0
        for j in range(d):
            level = np.int64(_level(projected[j], best_delta))
            level_sum += level
            for k in range(PLANES // 2):
                digit = _DIGITS[level - LOWEST, k]
                if digit != 0:
                    p = 2 * k + (1 if digit < 0 else 0)
                    planes[qi, p, j >> 3] |= np.uint8(1 << (7 - (j & 7)))
        scales[qi] = np.float32(2.0 * best_delta)
        shifts[qi] = np.float32(-best_delta * level_sum)
        if coarse_planes.shape[0] == 0:
            continue
        _ternary(projected, coarse_fractions, candidates, coarse_planes[qi])


@njit(**INLINE_KERNEL)
def _ternary(projected, fractions, candidates, planes):
    """Write the ternary query of ``projected (d,) float64`` into ``planes (COARSE_PLANES,
    nbytes)``. ``candidates (4, f) float64``: room for each fraction's threshold, level, count
    and error; every candidate's sums are taken over j in order, all candidates in one pass."""
    d = projected.shape[0]
    mean_square = 0.0
    for j in range(d):
        mean_square += projected[j] * projected[j]
    rms = np.sqrt(mean_square / d)
    thetas, lams, kept, errors = candidates[0], candidates[1], candidates[2], candidates[3]
    for f in range(fractions.shape[0]):
        thetas[f] = fractions[f] * rms
        lams[f], kept[f], errors[f] = 0.0, 0.0, 0.0
    for j in range(d):
        value = abs(projected[j])
        for f in range(thetas.shape[0]):
            above = value > thetas[f]
            lams[f] += value if above else 0.0  # the sum of the kept |q'_j| until divided
            kept[f] += 1.0 if above else 0.0
    for f in range(thetas.shape[0]):
        lams[f] = lams[f] / kept[f] if kept[f] > 0 else 1.0
    for j in range(d):
        value = abs(projected[j])
        for f in range(thetas.shape[0]):
            residual = value - lams[f] if value > thetas[f] else value
            errors[f] += residual * residual
    best_error, best_theta = np.inf, np.inf
    for f in range(thetas.shape[0]):
        if errors[f] < best_error:
            best_error, best_theta = errors[f], thetas[f]
    for j in range(d):
        if abs(projected[j]) > best_theta:
            planes[1 if projected[j] < 0 else 0, j >> 3] |= np.uint8(1 << (7 - (j & 7)))
