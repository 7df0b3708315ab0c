"""Scalar and binary quantization of float embeddings, a drop-in for sentence-transformers.

``quantize_embeddings`` returns the dtype, shape and values of
``sentence_transformers.util.quantization.quantize_embeddings`` (6.2) for finite float input:

- ``"float32"``: ``(n, d) float32`` copy.
- ``"int8"`` / ``"uint8"``: ``(n, d)`` codes ``clip(floor((x - start) / step), 0, 255)``, minus 128
  for int8, with ``step = (max - min) / 255`` per dimension (1 where max == min). Values outside
  the ranges saturate.
- ``"ubinary"``: ``(n, ceil(d / 8)) uint8``, bit set when ``x > 0``, most-significant bit first
  like ``np.packbits(x > 0, axis=-1)``; ``"binary"`` is the same bytes minus 128 as int8.

Arguments are validated here, once; the 2-D work runs in the Numba kernels of
``fastquant._kernels.pack``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kernels.config import QUANTIZE_PARALLEL_MIN_ELEMENTS
from ._kernels.pack import (
    centred_codes,
    centred_codes_parallel,
    pack_sign_bits,
    pack_sign_bits_parallel,
    quantize_int8,
    quantize_int8_parallel,
)
from .validation import (
    as_centre,
    as_embeddings,
    as_ranges,
    choice,
    require_calibration_rows,
    require_dim,
    require_finite,
    require_float,
    require_ndim,
    require_non_empty,
    to_numpy,
)

if TYPE_CHECKING:
    from torch import Tensor

    EmbeddingsLike = np.ndarray | Tensor | Sequence[np.ndarray] | Sequence[Tensor]

#: Precisions accepted by ``quantize_embeddings``, as in sentence-transformers.
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
_SCALAR_PRECISIONS = ("int8", "uint8")


@dataclass(frozen=True, eq=False)
class Calibration:
    """Per-dimension ranges for int8/uint8 quantization, shared by a corpus and its queries.

    ``ranges (2, d) float32`` holds the minima (row 0) and maxima (row 1); ``starts (d,) float32``
    and ``steps (d,) float32`` are derived from them exactly as sentence-transformers does.
    """

    ranges: np.ndarray
    starts: np.ndarray = field(init=False, repr=False)
    steps: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ranges = as_ranges(self.ranges)
        steps = (ranges[1] - ranges[0]) / np.float32(255)
        steps[steps == 0] = 1
        for name, array in (("ranges", ranges), ("starts", ranges[0]), ("steps", steps)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @classmethod
    def from_embeddings(cls, calibration_embeddings: Any) -> Calibration:
        """Ranges from the per-dimension min and max of ``calibration_embeddings (n, d) float``."""
        embeddings = to_numpy(calibration_embeddings)
        require_float("calibration_embeddings", embeddings)
        require_ndim("calibration_embeddings", embeddings, 2)
        require_non_empty("calibration_embeddings", embeddings)
        ranges = np.vstack((embeddings.min(axis=0), embeddings.max(axis=0)))
        # NaN propagates into the minima and Inf shows in them or the maxima: no separate pass.
        if not np.isfinite(ranges).all():
            require_finite("calibration_embeddings", embeddings)
        return cls(ranges)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Calibration:
        """Read ranges written by ``save``; a file of anything else raises ``ValueError``."""
        try:
            ranges = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(f"{path} is not a .npy file of calibration ranges: {error}") from error
        if not isinstance(ranges, np.ndarray) or ranges.dtype.kind != "f":
            raise ValueError(f"{path} must hold a (2, d) float array of calibration ranges")
        try:
            return cls(ranges)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    @property
    def dim(self) -> int:
        """Number of dimensions ``d``."""
        return self.ranges.shape[1]

    def save(self, path: str | PathLike[str]) -> None:
        """Write ``ranges (2, d) float32`` as ``.npy`` (NumPy appends the suffix if missing)."""
        np.save(path, self.ranges)

    def quantize(self, embeddings: EmbeddingsLike, precision: str = "int8") -> np.ndarray:
        """Codes ``(n, d)`` or ``(d,)`` int8 (or uint8) of float ``embeddings``, these ranges."""
        choice("precision", precision, _SCALAR_PRECISIONS)
        embeddings = as_embeddings("embeddings", embeddings)
        require_dim("embeddings", embeddings, self.dim)
        return quantize_checked(embeddings, precision, self)

    def dequantize(self, codes_i8: Any) -> np.ndarray:
        """Float32 values ``start + (code + 128) * step`` of int8 codes ``(n, d)`` or ``(d,)``."""
        codes_i8 = to_numpy(codes_i8)
        if codes_i8.dtype != np.int8:
            raise TypeError(f"codes_i8 must be int8 codes; got dtype {codes_i8.dtype}")
        require_ndim("codes_i8", codes_i8, 1, 2)
        require_dim("codes_i8", codes_i8, self.dim)
        return self.starts + (codes_i8.astype(np.float32) + np.float32(128)) * self.steps


def quantize_embeddings(
    embeddings: EmbeddingsLike,
    precision: str,
    ranges: Any | None = None,
    calibration_embeddings: Any | None = None,
) -> np.ndarray | list[np.ndarray]:
    """Quantize float ``embeddings`` like sentence-transformers' function of the same name.

    ``embeddings`` is ``(n, d)`` or ``(d,)`` float16/32/64 (an array, tensor or list of vectors),
    or a list of ``(n_i, d)`` matrices (multi-vector), quantized with shared ranges and returned
    as a list. int8/uint8 ranges come from ``ranges (2, d)``, else from ``calibration_embeddings
    (m, d)``, else from ``embeddings`` themselves (which then need at least two rows).
    """
    choice("precision", precision, PRECISIONS)
    if isinstance(embeddings, (list, tuple)):
        if not embeddings:
            return []
        items = [to_numpy(item) for item in embeddings]
        if items[0].ndim == 2:
            return _quantize_documents(items, precision, ranges, calibration_embeddings)
        embeddings = np.array(items)
    embeddings = to_numpy(embeddings)
    if embeddings.ndim == 2 and embeddings.shape[0] == 0 and embeddings.shape[1] > 0:
        require_float("embeddings", embeddings)
        return _empty_codes(embeddings.shape[1], precision)
    embeddings = as_embeddings("embeddings", embeddings)
    calibration = None
    if precision in _SCALAR_PRECISIONS:
        calibration = _calibration_for(embeddings, ranges, calibration_embeddings)
    return quantize_checked(embeddings, precision, calibration)


def _empty_codes(dim: int, precision: str) -> np.ndarray:
    """What sentence-transformers returns for a ``(0, dim)`` matrix: ``(0, width)`` codes."""
    if precision == "float32":
        return np.zeros((0, dim), np.float32)
    width = dim if precision in _SCALAR_PRECISIONS else (dim + 7) // 8
    return np.zeros((0, width), np.int8 if precision in ("int8", "binary") else np.uint8)


def _calibration_for(
    embeddings: np.ndarray, ranges: Any, calibration_embeddings: Any
) -> Calibration:
    """The ``Calibration`` sentence-transformers would use for ``embeddings (n, d)``."""
    dim = embeddings.shape[-1]
    if ranges is not None:
        calibration = Calibration(ranges)
        if calibration.dim != dim:
            raise ValueError(
                f"ranges must have shape (2, {dim}) to match the embeddings; "
                f"got {calibration.ranges.shape}"
            )
        return calibration
    if calibration_embeddings is not None:
        calibration = Calibration.from_embeddings(calibration_embeddings)
        if calibration.dim != dim:
            raise ValueError(
                f"calibration_embeddings has dimension {calibration.dim}, expected {dim}"
            )
        return calibration
    require_calibration_rows("the embeddings", 1 if embeddings.ndim == 1 else len(embeddings))
    return Calibration.from_embeddings(embeddings)


def _quantize_documents(
    documents: list[np.ndarray], precision: str, ranges: Any, calibration_embeddings: Any
) -> list[np.ndarray]:
    """Quantize ``(n_i, d)`` matrices with ranges shared by all of them; empty ones are allowed."""
    dim = documents[0].shape[1]
    for i, document in enumerate(documents):
        name = f"embeddings[{i}]"
        require_float(name, document)
        require_ndim(name, document, 2)
        require_dim(name, document, dim)
        require_finite(name, document)
    stacked = np.concatenate(documents)
    if stacked.shape[0] == 0:  # as sentence-transformers 6.3: nothing to calibrate or pack
        return [_empty_codes(dim, precision) for _ in documents]
    calibration = None
    if precision in _SCALAR_PRECISIONS:
        calibration = _calibration_for(stacked, ranges, calibration_embeddings)
    codes = quantize_checked(stacked, precision, calibration)
    return np.split(codes, np.cumsum([len(document) for document in documents[:-1]]))


def quantize_checked(
    embeddings: np.ndarray, precision: str, calibration: Calibration | None
) -> np.ndarray:
    """Dispatch already validated ``embeddings (n, d)`` or ``(d,)`` to the kernel of ``precision``.

    For callers that checked dtype, shape and finiteness themselves (the corpus store checks a
    batch once, then quantizes it in slices).
    """
    if precision == "float32":
        return embeddings.astype(np.float32)
    # float16 widens to float32 exactly; NumPy also computes float16 - float32 in float32.
    rows = np.ascontiguousarray(
        embeddings.reshape(-1, embeddings.shape[-1]),
        dtype=np.float32 if embeddings.dtype == np.float16 else embeddings.dtype,
    )
    parallel = rows.size >= QUANTIZE_PARALLEL_MIN_ELEMENTS
    if precision in _SCALAR_PRECISIONS:
        codes = np.empty(rows.shape, dtype=np.int8)
        kernel = quantize_int8_parallel if parallel else quantize_int8
        starts, steps = calibration.starts.astype(rows.dtype), calibration.steps.astype(rows.dtype)
        kernel(rows, starts, steps, codes)
        if precision == "uint8":
            codes = codes.view(np.uint8)
            codes ^= 0x80
    else:
        codes = np.empty((rows.shape[0], (rows.shape[1] + 7) // 8), dtype=np.uint8)
        (pack_sign_bits_parallel if parallel else pack_sign_bits)(rows, codes)
        if precision == "binary":
            codes ^= 0x80
            codes = codes.view(np.int8)
    return codes.reshape(*embeddings.shape[:-1], codes.shape[-1])


def centre_of(embeddings: Any) -> np.ndarray:
    """``(d,) float32`` per-dimension mean of ``embeddings (n, d)``: the centre of centred bits."""
    embeddings = as_embeddings("embeddings", embeddings, 2)
    return embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)


def centred_bits(embeddings: Any, centre: Any) -> tuple[np.ndarray, np.ndarray]:
    """Centred bits and row factors of ``embeddings (n, d)`` for :func:`fastquant.asymmetric_topk`.

    Returns ``bits (n, ceil(d / 8)) uint8``, bit set where ``x > centre`` (MSB first), and
    ``factors (n, 2) uint16``: bfloat16 ``f = |r|^2 / |r|_1`` and ``g = r . centre`` of the
    residual ``r = x - centre``, which make the asymmetric score an estimate of ``q . x``.
    """
    embeddings = as_embeddings("embeddings", embeddings, 2)
    centre = as_centre(centre, embeddings.shape[1])
    return centred_checked(embeddings, centre)


def centred_checked(embeddings: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`centred_bits` of already validated ``embeddings (n, d)`` and ``centre (d,) float32``."""
    rows = np.ascontiguousarray(
        embeddings, dtype=np.float32 if embeddings.dtype == np.float16 else embeddings.dtype
    )
    bits = np.empty((rows.shape[0], (rows.shape[1] + 7) // 8), dtype=np.uint8)
    factors = np.empty((rows.shape[0], 2), dtype=np.uint16)
    kernel = (
        centred_codes_parallel if rows.size >= QUANTIZE_PARALLEL_MIN_ELEMENTS else centred_codes
    )
    kernel(rows, centre.astype(rows.dtype), bits, factors)
    return bits, factors
