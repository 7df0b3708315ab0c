"""Checks run once at the public boundary, each raising ``ValueError`` that names the argument.

Kernels in ``fastquant._kernels`` trust their inputs; the public API converts arguments with
``to_numpy`` and checks them with these helpers before dispatching.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Float dtypes accepted as embeddings.
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def to_numpy(value: Any) -> np.ndarray:
    """``value`` as an ndarray, without importing torch.

    Tensors (anything with ``detach``, ``cpu`` and ``numpy``) are detached and moved to host
    memory; bfloat16 is upcast to float32, as NumPy has no bfloat16.
    """
    if all(hasattr(value, method) for method in ("detach", "cpu", "numpy")):
        if str(value.dtype).endswith("bfloat16"):
            value = value.float()
        return value.detach().cpu().numpy()
    return np.asarray(value)


def require_float(name: str, array: np.ndarray) -> None:
    """Float embeddings are required: float16, float32 or float64."""
    if array.dtype not in FLOAT_DTYPES:
        raise ValueError(
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


def require_dim(name: str, array: np.ndarray, dim: int) -> None:
    """The last axis of ``array`` has length ``dim``."""
    if array.shape[-1] != dim:
        raise ValueError(f"{name} has dimension {array.shape[-1]}, expected {dim}")


def require_finite_float_matrix(name: str, array: Any) -> np.ndarray:
    """``array`` as a non-empty, finite ``(n, d)`` float ndarray."""
    array = to_numpy(array)
    require_float(name, array)
    require_ndim(name, array, 2)
    require_non_empty(name, array)
    require_finite(name, array)
    return array


def require_positive_int(name: str, value: Any) -> int:
    """``value`` as a positive Python int: TypeError for non-integers (bools included), ValueError for <= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def require_calibration_rows(name: str, rows: int) -> None:
    """int8 ranges need at least two rows to calibrate on (one row has no spread)."""
    if rows < 2:
        raise ValueError(
            f"cannot compute int8 ranges from {name} of {rows} row(s): at least two rows are "
            "needed; give ranges or calibration embeddings from a representative set instead"
        )


def require_positive_k(k: Any) -> int:
    """``k`` as a positive Python int (see ``require_positive_int``)."""
    return require_positive_int("k", k)
