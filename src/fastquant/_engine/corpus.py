"""A corpus as the engine sees it: chunks of packed bits and int8 codes, the ids of their rows,
and which rows a search may return."""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .._kernels.hamming import addresses_of
from .._kernels.hints import MADV_WILLNEED, advise_rows
from ..quantize import Calibration


@dataclass(frozen=True)
class ChunkedCorpus:
    """The rows of one corpus, cut into chunks that are searched as one.

    ``bits[c] (rows_c, ceil(dim / 8)) uint8`` are chunk ``c``'s packed sign bits and
    ``codes[c] (rows_c, dim) int8`` its int8 codes (or no codes at all: an empty tuple);
    ``offsets (chunks + 1,) int64`` holds the *position* of each chunk's first row among all rows,
    then the total. Arrays are C-contiguous and may be memory-mapped. ``bits_flip`` is ``0x80``
    when the bits are sentence-transformers' signed ``binary`` codes (every byte's top bit
    inverted), else 0.

    Bits are plain sign bits (``x > 0``), or, with a ``centre (dim,) float32``, the bits of
    ``x > centre`` with per-row factors ``factors[c] (rows_c, 2) uint16`` (bfloat16 ``f, g``) for
    the asymmetric scan (:mod:`fastquant._engine.asymmetric`).

    Rows are found by position; what a caller sees is their *ids*: chunk ``c``'s are
    ``first_ids[c] + local row``, or ``ids[c] (rows_c,) int64`` where given (a compacted chunk).
    Ids grow with positions, so ordering ties by position orders them by id. Without
    ``first_ids`` ids are positions. ``allowed[c]`` is ``None`` or a bitmap of the rows a search
    may return (bit ``r & 7`` of byte ``r >> 3``, ``np.packbits(..., bitorder="little")``);
    ``allowed_rows`` counts them (None: every row).
    """

    dim: int
    bits: tuple[np.ndarray, ...]
    codes: tuple[np.ndarray, ...]
    offsets: np.ndarray
    calibration: Calibration | None
    bits_flip: int = 0
    centre: np.ndarray | None = None
    factors: tuple[np.ndarray, ...] = ()
    first_ids: np.ndarray | None = None
    ids: tuple[np.ndarray | None, ...] = ()
    allowed: tuple[np.ndarray | None, ...] = ()
    allowed_rows: int | None = None

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

    @property
    def searchable_rows(self) -> int:
        """Rows a search may return."""
        return self.rows if self.allowed_rows is None else self.allowed_rows

    @property
    def filtered(self) -> bool:
        """Whether some rows may not be returned."""
        return self.allowed_rows is not None and self.allowed_rows < self.rows

    def chunk_ids(self, c: int) -> np.ndarray:
        """``(rows_c,) int64`` ids of chunk ``c``'s rows."""
        explicit = self.ids[c] if self.ids else None
        if explicit is not None:
            return explicit
        first = self.offsets[c] if self.first_ids is None else self.first_ids[c]
        return np.arange(first, first + self.offsets[c + 1] - self.offsets[c], dtype=np.int64)

    @cached_property
    def chunk_addresses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``bits, factors, rows, allowed``, each ``(chunks,) int64``, for kernels that take
        chunks by address (``_kernels.hamming.addresses_of``): the base addresses of the chunks'
        bits and of their factors (empty without factors), their row counts, and the addresses
        of their allowed-row bitmaps (0: every row). This corpus keeps the arrays alive."""
        rows = np.diff(self.offsets)
        allowed = addresses_of([self.chunk_allowed(c) for c in range(rows.size)])
        return addresses_of(self.bits), addresses_of(self.factors), rows, allowed

    @cached_property
    def id_shift(self) -> int | None:
        """``id - position`` when it is the same for every row (chunks without explicit ids,
        each continuing the previous one's ids), else None."""
        if self.first_ids is None:
            return 0
        if any(explicit is not None for explicit in self.ids):
            return None
        shifts = self.first_ids - self.offsets[:-1]
        return int(shifts[0]) if shifts.size and (shifts == shifts[0]).all() else None

    def to_ids(self, positions: np.ndarray) -> np.ndarray:
        """Ids of ``positions`` (any shape, all in ``[0, rows)``)."""
        if self.first_ids is None:
            return positions
        if self.id_shift is not None:
            return positions + self.id_shift
        out = np.empty_like(positions)
        flat, result = positions.reshape(-1), out.reshape(-1)
        chunk = np.searchsorted(self.offsets, flat, side="right") - 1
        for c in np.unique(chunk):
            where = chunk == c
            local = flat[where] - self.offsets[c]
            explicit = self.ids[c] if self.ids else None
            result[where] = local + self.first_ids[c] if explicit is None else explicit[local]
        return out

    def to_positions(self, ids: np.ndarray) -> np.ndarray:
        """Positions of rows ``ids (m,) int64``; ``-1`` for an id no row holds."""
        if self.first_ids is None:
            return np.where((ids >= 0) & (ids < self.rows), ids, -1)
        order = None
        if ids.size > 1 and not np.all(ids[1:] >= ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids = ids[order]
        out = np.full(ids.shape, -1, dtype=np.int64)
        for c in range(len(self.offsets) - 1):
            n = self.chunk_rows(c)
            first = int(self.first_ids[c])
            explicit = self.ids[c] if self.ids else None
            end = first + n if explicit is None else int(explicit[-1]) + 1 if n else first
            lo, hi = np.searchsorted(ids, [first, end])
            wanted = ids[lo:hi]
            if explicit is None:
                out[lo:hi] = self.offsets[c] + wanted - first
                continue
            at = np.minimum(np.searchsorted(explicit, wanted), n - 1)
            found = explicit[at] == wanted
            out[lo:hi] = np.where(found, self.offsets[c] + at, -1)
        if order is not None:
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out

    def chunk_rows(self, c: int) -> int:
        """Rows of chunk ``c``."""
        return int(self.offsets[c + 1] - self.offsets[c])

    def chunk_allowed(self, c: int) -> np.ndarray | None:
        """Chunk ``c``'s bitmap of rows a search may return, or None for all of them."""
        return self.allowed[c] if self.allowed else None

    def chunk_allowed_rows(self, c: int) -> int:
        """How many rows of chunk ``c`` a search may return."""
        bitmap = self.chunk_allowed(c)
        return self.chunk_rows(c) if bitmap is None else int(np.bitwise_count(bitmap).sum())

    def restricted(self, positions: np.ndarray) -> ChunkedCorpus:
        """This corpus with only the rows at ``positions (m,) int64`` (ascending, unique, in
        ``[0, rows)``) searchable, of those already searchable."""
        return self._masked(positions, keep=True)

    def without(self, positions: np.ndarray) -> ChunkedCorpus:
        """This corpus with the rows at ``positions`` (as for :meth:`restricted`) no longer
        searchable; chunks without such rows keep their bitmap (or None)."""
        return self._masked(positions, keep=False)

    def _masked(self, positions: np.ndarray, keep: bool) -> ChunkedCorpus:
        allowed = []
        bounds = np.searchsorted(positions, self.offsets)
        for c in range(len(self.offsets) - 1):
            local = positions[bounds[c] : bounds[c + 1]] - self.offsets[c]
            bitmap = self.chunk_allowed(c)
            if not keep and not local.size:
                allowed.append(bitmap)
                continue
            n = self.chunk_rows(c)
            mask = np.full(n, not keep)
            mask[local] = keep
            if bitmap is not None:
                mask &= np.unpackbits(bitmap, count=n, bitorder="little").view(bool)
            allowed.append(np.packbits(mask, bitorder="little"))
        masked = replace(self, allowed=tuple(allowed))
        count = sum(masked.chunk_allowed_rows(c) for c in range(len(self.offsets) - 1))
        return replace(masked, allowed_rows=count)

    def allowed_positions(self) -> np.ndarray:
        """``(allowed_rows,) int64`` positions a search may return, ascending."""
        parts = []
        for c in range(len(self.offsets) - 1):
            n = self.chunk_rows(c)
            bitmap = self.chunk_allowed(c)
            local = (
                np.arange(n)
                if bitmap is None
                else np.flatnonzero(np.unpackbits(bitmap, count=n, bitorder="little"))
            )
            parts.append(local + self.offsets[c])
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


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
