"""A corpus as the engine sees it: chunks of packed bits and int8 codes with global row ids."""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .._kernels.hints import MADV_WILLNEED, advise_rows
from ..quantize import Calibration


@dataclass(frozen=True)
class ChunkedCorpus:
    """The rows of one corpus, cut into chunks that are searched as one.

    ``bits[c] (rows_c, ceil(dim / 8)) uint8`` are chunk ``c``'s packed sign bits and
    ``codes[c] (rows_c, dim) int8`` its int8 codes (or no codes at all: an empty tuple);
    ``offsets (chunks + 1,) int64`` holds the global id of each chunk's first row, then the total.
    Arrays are C-contiguous and may be memory-mapped. ``bits_flip`` is ``0x80`` when the bits are
    sentence-transformers' signed ``binary`` codes (every byte's top bit inverted), else 0.

    Bits are plain sign bits (``x > 0``), or, with a ``centre (dim,) float32``, the bits of
    ``x > centre`` with per-row factors ``factors[c] (rows_c, 2) uint16`` (bfloat16 ``f, g``) for
    the asymmetric scan (:mod:`fastquant._engine.asymmetric`).
    """

    dim: int
    bits: tuple[np.ndarray, ...]
    codes: tuple[np.ndarray, ...]
    offsets: np.ndarray
    calibration: Calibration | None
    bits_flip: int = 0
    centre: np.ndarray | None = None
    factors: tuple[np.ndarray, ...] = ()

    @classmethod
    def of_arrays(
        cls,
        dim: int,
        *,
        bits: np.ndarray | None = None,
        codes: np.ndarray | None = None,
        calibration: Calibration | None = None,
        bits_flip: int = 0,
        centre: np.ndarray | None = None,
        factors: np.ndarray | None = None,
    ) -> ChunkedCorpus:
        """One chunk of validated arrays: ``bits (n, ceil(dim / 8)) uint8``, ``codes (n, dim)
        int8``, ``factors (n, 2) uint16``."""
        rows = (bits if bits is not None else codes).shape[0]
        return cls(
            dim=dim,
            bits=() if bits is None else (bits,),
            codes=() if codes is None else (codes,),
            offsets=np.array([0, rows], dtype=np.int64),
            calibration=calibration,
            bits_flip=bits_flip,
            centre=centre,
            factors=() if factors is None else (factors,),
        )

    @property
    def rows(self) -> int:
        """Rows in all chunks."""
        return int(self.offsets[-1])


def chunk_segments(
    candidates: np.ndarray, offsets: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(chunk, local_rows, slots)``: every candidate, chunk by chunk, rows in file order.

    ``candidates (q, c) int64`` are global ids; ``slots`` index ``candidates.reshape(-1)``. Ids
    outside ``[0, offsets[-1])`` (e.g. -1 for "not mine") are left out.
    """
    flat = candidates.reshape(-1)
    slots = np.argsort(flat, kind="stable")
    rows = flat[slots]
    bounds = np.searchsorted(rows, offsets)
    for c in range(len(offsets) - 1):
        lo, hi = bounds[c], bounds[c + 1]
        if hi > lo:
            yield c, rows[lo:hi] - offsets[c], slots[lo:hi]


def prefetch_rows(table: np.ndarray, rows: np.ndarray) -> None:
    """Ask the OS to start reading the pages of rows ``rows (m,) int64`` of ``table (n, w)``.

    For memory-mapped tables not in memory: the pages are then fetched together rather than
    one fault at a time. Rows sorted ascending read the file in order.
    """
    advise_rows(table.ctypes.data, rows, table.strides[0], mmap.PAGESIZE, MADV_WILLNEED)
