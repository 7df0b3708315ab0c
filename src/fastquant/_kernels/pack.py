"""Sign-bit packing and int8 scalar quantization of float rows.

Inputs are C-contiguous ``x (n, d)`` float32 or float64; nothing is validated here.

- Bits are packed most-significant-bit first, bit set when ``x > 0``, exactly like
  ``np.packbits(x > 0, axis=1)``: the last byte of a row is zero-padded when ``d % 8 != 0``.
- int8 codes are ``clip(floor((x - starts) / steps), 0, 255) - 128`` computed in the dtype NumPy
  would use (float32 for float32 rows, float64 for float64 rows), so these kernels never use
  ``fastmath`` and match NumPy bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .bitplanes import float32_bits
from .config import INLINE_KERNEL, KERNEL, PARALLEL_KERNEL

#: Multiplying eight 0/1 bytes, read as one little-endian ``uint64``, by this constant gathers
#: them into the top byte with the first byte as its most significant bit.
_GATHER_BITS = np.uint64(0x8040201008040201)

#: Rows packed per parallel task; each task allocates one row of scratch.
_BLOCK_ROWS = 256


@njit(**INLINE_KERNEL)
def _pack_rows(x, lo, hi, out):
    """Pack rows ``[lo, hi)`` of ``x (n, d)`` into ``out (n, ceil(d / 8)) uint8``.

    Each row's signs go to a ``(d // 8 * 8,) uint8`` scratch of 0/1 bytes in one vectorized pass;
    every 8 of them become one byte with a multiply; the tail byte is packed bit by bit.
    """
    d = x.shape[1]
    full = d // 8
    flags = np.empty(8 * full, dtype=np.uint8)
    words = flags.view(np.uint64)
    for i in range(lo, hi):
        row = x[i]
        for j in range(8 * full):
            flags[j] = row[j] > 0
        for b in range(full):
            out[i, b] = (words[b] * _GATHER_BITS) >> np.uint64(56)
        if d > 8 * full:
            acc = 0
            for j in range(8 * full, d):
                acc = (acc << 1) | (row[j] > 0)
            out[i, full] = acc << (8 * (full + 1) - d)


@njit(**KERNEL)
def pack_sign_bits(x, out):
    """Pack ``x (n, d) float`` into ``out (n, ceil(d / 8)) uint8`` on the calling thread."""
    _pack_rows(x, 0, x.shape[0], out)


@njit(**PARALLEL_KERNEL)
def pack_sign_bits_parallel(x, out):
    """``pack_sign_bits`` with blocks of ``_BLOCK_ROWS`` rows split across Numba's thread pool."""
    n = x.shape[0]
    for block in prange((n + _BLOCK_ROWS - 1) // _BLOCK_ROWS):
        lo = block * _BLOCK_ROWS
        _pack_rows(x, lo, min(lo + _BLOCK_ROWS, n), out)


@njit(**INLINE_KERNEL)
def _quantize_row(x, i, starts, steps, out):
    """Quantize row ``i`` of ``x (n, d)`` into ``out[i] (d,) int8``."""
    for j in range(x.shape[1]):
        level = np.floor((x[i, j] - starts[j]) / steps[j])
        if level <= 0:
            out[i, j] = -128
        elif level >= 255:
            out[i, j] = 127
        else:
            out[i, j] = np.int32(level) - 128


@njit(**KERNEL)
def quantize_int8(x, starts, steps, out):
    """Quantize ``x (n, d)`` into ``out (n, d) int8`` on the calling thread.

    ``starts (d,)`` and ``steps (d,)`` have the dtype of ``x`` (float32 ranges widened for float64).
    """
    for i in range(x.shape[0]):
        _quantize_row(x, i, starts, steps, out)


@njit(**PARALLEL_KERNEL)
def quantize_int8_parallel(x, starts, steps, out):
    """``quantize_int8`` with rows split across Numba's thread pool."""
    for i in prange(x.shape[0]):
        _quantize_row(x, i, starts, steps, out)


#: Largest finite bfloat16 (``0x7F7F``): factors saturate here rather than round to infinity.
BFLOAT16_MAX = 3.3895313892515355e38


@njit(**INLINE_KERNEL)
def _bfloat16_bits(value):
    """``value`` (float64) as the nearest bfloat16, ties to even, saturated at ``BFLOAT16_MAX``."""
    value = min(max(value, -BFLOAT16_MAX), BFLOAT16_MAX)
    bits = np.uint32(float32_bits(np.float32(value)))
    return np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> 16)


@njit(**INLINE_KERNEL)
def _centred_rows(x, centre, lo, hi, bits, factors):
    """Rows ``[lo, hi)`` of ``x (n, d)``: bits of ``x > centre`` and bfloat16 factors ``(f, g)``.

    ``r = x - centre`` in float64, ``f = |r|^2 / |r|_1`` (0 for ``r = 0``) and ``g = r . centre``,
    summed in dimension order, so a row's factors never depend on the rows around it.
    """
    d = x.shape[1]
    full = d // 8
    for i in range(lo, hi):
        row = x[i]
        squares, absolutes, along = 0.0, 0.0, 0.0
        for b in range(full + (1 if d % 8 else 0)):
            acc = 0
            for j in range(8 * b, min(8 * b + 8, d)):
                r = np.float64(row[j]) - np.float64(centre[j])
                squares += r * r
                absolutes += abs(r)
                along += r * np.float64(centre[j])
                acc = (acc << 1) | (row[j] > centre[j])
            bits[i, b] = acc << (8 * b + 8 - min(8 * b + 8, d))
        factors[i, 0] = _bfloat16_bits(squares / absolutes if absolutes > 0 else 0.0)
        factors[i, 1] = _bfloat16_bits(along)


@njit(**KERNEL)
def centred_codes(x, centre, bits, factors):
    """Bits ``(n, ceil(d / 8)) uint8`` of ``x (n, d) > centre (d,)`` (MSB first) and factors
    ``(n, 2) uint16`` (bfloat16 ``f, g``), on the calling thread."""
    _centred_rows(x, centre, 0, x.shape[0], bits, factors)


@njit(**PARALLEL_KERNEL)
def centred_codes_parallel(x, centre, bits, factors):
    """``centred_codes`` with blocks of ``_BLOCK_ROWS`` rows split across Numba's thread pool."""
    n = x.shape[0]
    for block in prange((n + _BLOCK_ROWS - 1) // _BLOCK_ROWS):
        lo = block * _BLOCK_ROWS
        _centred_rows(x, centre, lo, min(lo + _BLOCK_ROWS, n), bits, factors)
