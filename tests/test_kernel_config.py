"""Every kernel is compiled with the flags of ``_kernels/config.py``, and the scan uses hardware popcount."""

from __future__ import annotations

import importlib
import pkgutil
import re

import numba
import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import fastquant._kernels as kernels_package
from fastquant._kernels import config
from fastquant._kernels.hamming import block_distances

FLAG_SETS = [
    config.KERNEL,
    config.FASTMATH_KERNEL,
    config.PARALLEL_KERNEL,
    config.PARALLEL_FASTMATH_KERNEL,
    config.INLINE_KERNEL,
]


def _kernels():
    for info in pkgutil.iter_modules(kernels_package.__path__):
        module = importlib.import_module(f"fastquant._kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                yield f"{info.name}.{name}", value


def test_kernels_exist():
    assert len(list(_kernels())) >= 10


@pytest.mark.parametrize(("name", "dispatcher"), list(_kernels()))
def test_kernel_uses_config_flags(name, dispatcher):
    # Numba keeps ``cache`` outside ``targetoptions``: compare the rest, check caching apart.
    options = dict(dispatcher.targetoptions)
    options.pop("nopython", None)
    expected = [{k: v for k, v in flags.items() if k != "cache"} for flags in FLAG_SETS]
    assert options in expected, (
        f"{name} is compiled with {options}, not a flag set of _kernels/config.py"
    )
    assert type(dispatcher._cache).__name__ != "NullCache", f"{name} is not cached on disk"


def _cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return flag in f.read().split()
    except OSError:
        return False


def test_scan_uses_hardware_popcount():
    # Numba cannot show the assembly of disk-cached code: compile an uncached copy of the block scan.
    uncached = numba.njit(**{**config.KERNEL, "cache": False})(block_distances.py_func)
    corpus = np.zeros(64 * 16, dtype=np.uint8)
    dist = np.empty(4 * config.SCAN_BLOCK_ROWS, dtype=np.int32)
    uncached(
        corpus, corpus[:512], 128, 0, 8, 0, 4, dist, np.empty(4, np.int32), config.PREFETCH_BYTES
    )
    asm = "\n".join(uncached.inspect_asm().values())
    assert "popcnt" in asm
    if _cpu_has("avx512_vpopcntdq"):
        assert re.search(r"vpopcntq\s+%zmm", asm), "expected vector popcount on zmm registers"


@pytest.mark.parametrize("coarse", [False, True])
def test_plane_scan_uses_hardware_popcount(coarse):
    """The asymmetric scan's bit-plane blocks (4-bit and ternary queries): vector popcounts of
    AND-ed words, as the Hamming scan's."""
    from fastquant._kernels.asymmetric import block_plane_totals

    uncached = numba.njit(**{**config.KERNEL, "cache": False})(block_plane_totals.py_func)
    corpus = np.zeros(64 * 16, dtype=np.uint8)
    totals = np.empty(4 * config.SCAN_BLOCK_ROWS, dtype=np.int32)
    maxima = np.empty(4, dtype=np.int32)
    uncached(corpus, corpus[:2048], 128, coarse, 0, 8, 0, 4, totals, maxima, config.PREFETCH_BYTES)
    asm = "\n".join(uncached.inspect_asm().values())
    assert "popcnt" in asm
    if _cpu_has("avx512_vpopcntdq"):
        assert re.search(r"vpopcntq\s+%zmm", asm), "expected vector popcount on zmm registers"
