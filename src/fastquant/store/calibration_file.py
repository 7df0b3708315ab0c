"""``calibration.npy`` and ``centre.npy``: a store's int8 ranges and the centre of its bits,
written atomically and read as checked regular files."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np

from ..quantize import Calibration
from .errors import StoreCorruptedError
from .manifest import CALIBRATION_NAME, CENTRE_NAME, Manifest
from .safe_files import read_regular, write_file_atomically

#: Room for a ``.npy`` header; the ranges take ``2 * dim`` floats of at most 8 bytes after it.
_NPY_HEADER_BYTES = 1 << 16


def write_calibration(path: Path, calibration: Calibration) -> int:
    """Write ``path/calibration.npy`` atomically; returns its CRC-32 for the manifest."""
    return _write_npy(path / CALIBRATION_NAME, calibration.ranges)


def write_centre(path: Path, centre: np.ndarray) -> int:
    """Write ``path/centre.npy`` (``(dim,) float32``) atomically; returns its CRC-32."""
    return _write_npy(path / CENTRE_NAME, centre)


def _write_npy(file: Path, array: np.ndarray) -> int:
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    write_file_atomically(file, data)
    return zlib.crc32(data)


def read_centre(path: Path, manifest: Manifest) -> np.ndarray:
    """The centre ``manifest`` records, ``(dim,) float32`` from ``path/centre.npy``."""
    file = path / CENTRE_NAME
    try:
        data = read_regular(file, _NPY_HEADER_BYTES + 8 * manifest.dim)
    except FileNotFoundError:
        raise StoreCorruptedError(f"{file} is missing: the manifest records a centre") from None
    if zlib.crc32(data) != manifest.centre_crc32:
        raise StoreCorruptedError(f"{file} fails its checksum: the centre was changed")
    try:
        centre = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise StoreCorruptedError(f"{file} does not hold a centre: {error}") from error
    if (
        not isinstance(centre, np.ndarray)
        or centre.dtype != np.float32
        or centre.shape != (manifest.dim,)
        or not np.isfinite(centre).all()
    ):
        raise StoreCorruptedError(
            f"{file} must hold a finite ({manifest.dim},) float32 centre of the bits"
        )
    centre.flags.writeable = False
    return centre


def read_calibration(path: Path, manifest: Manifest) -> Calibration:
    """The ranges ``manifest`` records, from ``path/calibration.npy``; problems name the file."""
    file = path / CALIBRATION_NAME
    try:
        data = read_regular(file, _NPY_HEADER_BYTES + 16 * manifest.dim)
    except FileNotFoundError:
        raise StoreCorruptedError(f"{file} is missing: the manifest records int8 ranges") from None
    if zlib.crc32(data) != manifest.calibration_crc32:
        raise StoreCorruptedError(
            f"{file} fails its checksum: the int8 ranges were changed or truncated"
        )
    try:  # the bytes checked, not a second read
        ranges = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(ranges, np.ndarray) or ranges.dtype.kind != "f":
            raise ValueError("it holds no float array")
        calibration = Calibration(ranges)
    except (ValueError, OSError, EOFError) as error:
        raise StoreCorruptedError(f"{file} does not hold valid int8 ranges: {error}") from error
    if calibration.dim != manifest.dim:
        raise StoreCorruptedError(
            f"{file} has dimension {calibration.dim}, the manifest {manifest.dim}"
        )
    return calibration
