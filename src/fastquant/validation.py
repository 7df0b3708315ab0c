"""Every check at the public boundary, in one place, with one error policy.

- ``TypeError`` when an argument is the wrong kind of thing: not an array, a wrong dtype, a
  non-integer where an integer is needed (bools included), a string where a list is needed.
- ``ValueError`` when it is the right kind with a bad value: wrong shape or dimension, empty,
  NaN/Inf, out of range, not one of the allowed choices.

Each message names the argument. Public functions convert and check their arguments with the
``as_*`` helpers below, then call ``fastquant._engine`` or the kernels, which trust their inputs.
Arrays in a non-native byte order (``>f4``) are converted, as NumPy arithmetic would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

if TYPE_CHECKING:
    from .quantize import Calibration

#: Float dtypes accepted as embeddings.
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

#: Largest float32 value; a query whose scores could exceed a quarter of it is refused, so that
#: sums of a few such scores (query constants, accumulations) stay finite.
FLOAT32_MAX = float(np.finfo(np.float32).max)
SCORE_LIMIT = FLOAT32_MAX / 4


# -- arrays ---------------------------------------------------------------------------------------


def to_numpy(value: Any) -> np.ndarray:
    """``value`` as an ndarray in native byte order, without importing torch.

    Tensors (anything with ``detach``, ``cpu`` and ``numpy``) are detached and moved to host
    memory; bfloat16 is upcast to float32, as NumPy has no bfloat16.
    """
    if all(hasattr(value, method) for method in ("detach", "cpu", "numpy")):
        if str(value.dtype).endswith("bfloat16"):
            value = value.float()
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def require_float(name: str, array: np.ndarray) -> None:
    """Float embeddings are required: float16, float32 or float64 (TypeError otherwise)."""
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must hold float embeddings (float16, float32 or float64); "
            f"got dtype {array.dtype}"
        )


def require_ndim(name: str, array: np.ndarray, *ndims: int) -> None:
    """``array.ndim`` is one of ``ndims``."""
    if array.ndim not in ndims:
        allowed = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be {allowed}; got {array.ndim}-D with shape {array.shape}")


def require_non_empty(name: str, array: np.ndarray) -> None:
    """No axis of ``array`` has length 0."""
    if array.size == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")


def require_finite(name: str, array: np.ndarray) -> None:
    """No NaN or Inf in the float ``array``; the error counts them and gives the first row."""
    if _surely_finite(array):
        return
    bad = ~np.isfinite(array)
    if not bad.any():
        return
    first = np.argwhere(bad)[0]
    where = f"row {first[0]}" if array.ndim == 2 else f"index {first[0]}"
    raise ValueError(f"{name} contains {int(bad.sum())} NaN or Inf values (first in {where})")


def _surely_finite(array: np.ndarray) -> bool:
    """True when ``array`` certainly holds no NaN or Inf, in one pass and without a mask.

    NaN and Inf propagate through any sum, so finite row sums (one BLAS matrix-vector product)
    prove every value finite; a sum that overflows returns False and leaves it to the exact check.
    float16 has no BLAS and overflows early, so its min and max are checked instead.
    """
    if array.dtype == np.float16:
        return bool(np.isfinite(array.min()) and np.isfinite(array.max()))
    with np.errstate(over="ignore", invalid="ignore"):
        row_sums = array @ np.ones(array.shape[-1], dtype=array.dtype)
    return bool(np.isfinite(row_sums).all())


def require_float32_range(name: str, array: np.ndarray) -> None:
    """Finite float64 values must also be finite as float32 (|x| <= 3.4e38)."""
    if array.dtype != np.float64:
        return
    beyond = np.abs(array) > FLOAT32_MAX
    if beyond.any():
        first = np.argwhere(beyond)[0]
        where = f"row {first[0]}" if array.ndim == 2 else f"index {first[0]}"
        raise ValueError(
            f"{name} has {int(beyond.sum())} values beyond the float32 range "
            f"(|x| > {FLOAT32_MAX:.4g}; first in {where})"
        )


def require_dim(name: str, array: np.ndarray, dim: int) -> None:
    """The last axis of ``array`` has length ``dim``."""
    if array.shape[-1] != dim:
        raise ValueError(f"{name} has dimension {array.shape[-1]}, expected {dim}")


def as_embeddings(name: str, value: Any, *ndims: int) -> np.ndarray:
    """``value`` as a non-empty, finite float ndarray of ``ndims`` (default 1-D or 2-D), dtype kept."""
    array = to_numpy(value)
    require_float(name, array)
    require_ndim(name, array, *(ndims or (1, 2)))
    require_non_empty(name, array)
    require_finite(name, array)
    return array


def as_float32_rows(name: str, value: Any, dim: int | None = None) -> np.ndarray:
    """Float rows ``(n, d)`` (or one ``(d,)`` row) as a C-contiguous ``(n, d) float32`` array.

    Refuses NaN/Inf, float64 values beyond the float32 range, and (given ``dim``) another
    dimension.
    """
    array = to_numpy(value)
    if array.ndim == 1:
        array = array[None, :]
    array = as_embeddings(name, array, 2)
    require_float32_range(name, array)
    if dim is not None:
        require_dim(name, array, dim)
    return np.ascontiguousarray(array, dtype=np.float32)


def as_queries(value: Any, dim: int | None, *, bound: np.ndarray | None = None) -> np.ndarray:
    """``query_f32 (q, dim)`` float32 queries (or one ``(dim,)`` row), safe to score.

    ``bound (dim,)`` is the largest absolute value a corpus row can hold per dimension (``1`` for
    sign bits, the calibration's ``max(|min|, |max|)`` for int8): a query whose score could then
    exceed ``SCORE_LIMIT`` in float32 is refused, rather than returning Inf, NaN or wrong ids.
    Without ``bound`` every dimension counts as 1.
    """
    array = to_numpy(value)
    if array.ndim == 1:
        array = array[None, :]
    require_float("query_f32", array)
    require_ndim("query_f32", array, 2)
    require_non_empty("query_f32", array)
    # One pass for the usual case: NaN, Inf and float64 values beyond float32 (Inf once cast)
    # fail the score bound too; only then do the checks below name the problem.
    with np.errstate(over="ignore", invalid="ignore"):
        queries = np.ascontiguousarray(array, dtype=np.float32)
        if dim is None or queries.shape[1] == dim:
            largest = _largest_scores(queries, bound)
            if (largest <= SCORE_LIMIT).all():
                return queries
    require_finite("query_f32", array)
    require_float32_range("query_f32", array)
    if dim is not None:
        require_dim("query_f32", array, dim)
    row = int(np.argmax(~(largest <= SCORE_LIMIT)))
    raise ValueError(
        f"query_f32 row {row} is too large to score in float32: its scores could reach "
        f"{largest[row]:.3g} (at most {SCORE_LIMIT:.3g}); normalize the queries"
    )


def _largest_scores(queries: np.ndarray, bound: np.ndarray | None) -> np.ndarray:
    """``(q,) float64`` the largest score each of ``queries (q, d) float32`` can reach against
    rows within ``bound (d,)`` (every dimension 1 without it)."""
    weights = np.ones(queries.shape[1]) if bound is None else np.asarray(bound, np.float64)
    return np.abs(queries.astype(np.float64)) @ weights


def as_bit_rows(name: str, value: Any) -> tuple[np.ndarray, bool]:
    """Packed bits ``(n, nbytes)`` (or one ``(nbytes,)`` row) as C-contiguous ``uint8``.

    ``uint8`` is ``np.packbits`` / sentence-transformers' ``ubinary``; ``int8`` is its signed
    ``binary`` (every byte minus 128). Returns the bytes viewed as ``uint8`` and whether they are
    signed codes (each byte's top bit then reads inverted: ``byte ^ 0x80`` is the packed bits).
    """
    array = to_numpy(value)
    if array.dtype not in (np.uint8, np.int8):
        raise TypeError(
            f"{name} must hold packed bits as uint8 (np.packbits, precision='ubinary') or int8 "
            f"(precision='binary'), got dtype {array.dtype}"
        )
    if array.ndim == 1:
        array = array[None, :]
    require_ndim(name, array, 2)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    return np.ascontiguousarray(array).view(np.uint8), array.dtype == np.int8


def as_int8_codes(value: Any, calibration: Calibration) -> np.ndarray:
    """``codes_i8 (n, d) int8`` (``quantize_embeddings(..., "int8")``) made with ``calibration``
    ``(2, d)``, as a C-contiguous array."""
    codes = to_numpy(value)
    if codes.dtype != np.int8:
        raise TypeError(f"codes_i8 must be int8 codes (precision='int8'), got dtype {codes.dtype}")
    require_ndim("codes_i8", codes, 2)
    require_non_empty("codes_i8", codes)
    if codes.shape[1] != calibration.dim:
        raise ValueError(
            f"calibration is for {calibration.dim}-d embeddings, but codes_i8 rows are "
            f"{codes.shape[1]}-d"
        )
    return np.ascontiguousarray(codes)


def int8_bound(calibration: Calibration) -> np.ndarray:
    """``(d,) float64`` largest absolute value a dequantized int8 code takes per dimension."""
    return np.abs(calibration.ranges.astype(np.float64)).max(axis=0)


def row_bound(dim: int, calibration: Calibration | None, centre: np.ndarray | None) -> np.ndarray:
    """``(dim,) float64`` largest absolute value a stored row's scored form takes per dimension,
    the ``bound`` of :func:`as_queries`: the largest dequantized int8 value (1 without ranges:
    ``2b - 1``), plus ``|centre|`` for centred bits, whose residuals the asymmetric scores
    estimate."""
    bound = 1.0 if calibration is None else int8_bound(calibration)
    if centre is not None:
        bound = bound + np.abs(centre.astype(np.float64))
    return np.broadcast_to(bound, (dim,))


def as_ranges(ranges: Any) -> np.ndarray:
    """``ranges`` as a new finite ``(2, d) float32`` array with min <= max in every dimension."""
    ranges = to_numpy(ranges)
    if ranges.dtype.kind not in "iuf":
        raise TypeError(f"ranges must be a numeric (2, d) array; got dtype {ranges.dtype}")
    if ranges.ndim != 2 or ranges.shape[0] != 2 or ranges.shape[1] == 0:
        raise ValueError(f"ranges must have shape (2, d): minima then maxima; got {ranges.shape}")
    require_finite("ranges", ranges)
    inverted = np.flatnonzero(ranges[0] > ranges[1])
    if inverted.size:
        raise ValueError(
            f"ranges has min > max in {inverted.size} dimensions (first: dimension {inverted[0]})"
        )
    with np.errstate(over="ignore"):
        ranges = ranges.astype(np.float32)
        span = ranges[1] - ranges[0]
    too_wide = np.flatnonzero(~np.isfinite(span))
    if too_wide.size:
        raise ValueError(
            f"ranges overflow float32 (max - min must stay below {np.finfo(np.float32).max:.4g}) "
            f"in {too_wide.size} dimensions (first: dimension {too_wide[0]})"
        )
    return ranges


def as_centre(value: Any, dim: int) -> np.ndarray:
    """``centre (dim,)``: finite floats, as a read-only ``float32`` array."""
    centre = as_embeddings("centre", value, 1)
    require_dim("centre", centre, dim)
    require_float32_range("centre", centre)
    centre = centre.astype(np.float32)
    centre.flags.writeable = False
    return centre


def as_calibration(value: Any) -> Calibration:
    """A :class:`~fastquant.Calibration`, or ``(2, d)`` ranges to build one from."""
    from .quantize import Calibration

    return value if isinstance(value, Calibration) else Calibration(value)


def as_candidate_ids(value: Any, q: int, n: int) -> np.ndarray:
    """Candidate row ids ``(q, c)``: integers in ``[0, n)``, no repeats within a query's row.

    Returned as ``int64``, sorted per row, so rows are read from (possibly memory-mapped) files
    in file order.
    """
    ids = to_numpy(value)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.dtype.kind not in "iu":
        raise TypeError(f"candidate_ids must be integer row ids, got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[0] != q or ids.shape[1] == 0:
        raise ValueError(f"candidate_ids must have shape ({q}, c) with c >= 1, got {ids.shape}")
    if ids.min() < 0 or ids.max() >= n:
        raise ValueError(
            f"candidate_ids must lie in [0, {n}), got values from {ids.min()} to {ids.max()}"
        )
    ids = np.sort(ids.astype(np.int64), axis=1)
    if ids.shape[1] > 1 and (ids[:, 1:] == ids[:, :-1]).any():
        raise ValueError("candidate_ids repeat a row id within one query")
    return ids


def as_row_ids(name: str, value: Any, next_id: int) -> np.ndarray:
    """Ids of a store's rows, ``(m,) int64`` ascending and unique: an integer or a 1-D sequence
    of integers in ``[0, next_id)``, or a boolean mask of length ``next_id`` (its true places)."""
    ids = to_numpy(value)
    if ids.dtype == np.bool_:
        if ids.shape != (next_id,):
            raise ValueError(
                f"{name} as a boolean mask must have one entry per id, shape ({next_id},); "
                f"got {ids.shape}"
            )
        return np.flatnonzero(ids).astype(np.int64)
    if ids.size == 0 and ids.ndim == 1:
        return np.empty(0, dtype=np.int64)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer row ids or a boolean mask, got dtype {ids.dtype}")
    if ids.ndim > 1:
        raise ValueError(f"{name} must be one id or a 1-D array of ids, got shape {ids.shape}")
    ids = ids.reshape(-1).astype(np.int64)
    if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):  # already ascending: nothing to do
        ids = np.sort(ids)
        ids = ids[np.concatenate(([True], ids[1:] != ids[:-1]))]
    if ids.size and (ids[0] < 0 or ids[-1] >= next_id):
        bad = ids[0] if ids[0] < 0 else ids[-1]
        raise ValueError(
            f"{name} holds id {bad}, which no row of this store ever had (ids run from 0 to "
            f"{next_id - 1})"
            if next_id
            else f"{name} holds id {bad}, but this store never had a row"
        )
    return ids


# -- numbers and names ----------------------------------------------------------------------------


def as_int(name: str, value: Any) -> int:
    """``value`` as a Python int; TypeError for anything but an integer (bools are not)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    """``value`` as a positive Python int (TypeError for non-integers, ValueError for <= 0)."""
    value = as_int(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def non_negative_int(name: str, value: Any) -> int:
    """``value`` as a Python int >= 0 (TypeError for non-integers, ValueError below 0)."""
    value = as_int(name, value)
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, got {value}")
    return value


def thread_count(threads: Any) -> int:
    """Threads for one call: ``None`` means every thread Numba started with
    (``NUMBA_NUM_THREADS``); otherwise a positive integer."""
    if threads is None:
        return int(numba.config.NUMBA_NUM_THREADS)
    return positive_int("threads", threads)


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``; the error lists them."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def names(name: str, value: Any) -> list[str]:
    """A list of strings from a sequence of them (a single string is refused, not split)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a list of names such as [{value!r}], not a string")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold strings, got {type(item).__name__} {item!r}")
    return items


def require_calibration_rows(what: str, rows: int) -> None:
    """int8 ranges need at least two rows to calibrate on: a single embedding has no spread."""
    if rows < 2:
        count = "a single embedding has no spread" if rows == 1 else "it has no rows"
        raise ValueError(
            f"cannot compute int8 ranges from {what}: {count}; at least two rows are needed, or "
            "give ranges or calibration embeddings from a representative set"
        )
