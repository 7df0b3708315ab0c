"""Shared fixtures for the benchmark suite: machine facts, corpus sizes and ``--quick`` mode.

Full runs use the issue's shapes (1M rows); ``--quick`` shrinks every corpus so the whole
suite smoke-tests in seconds (no timing is asserted anywhere).
"""

from __future__ import annotations

import os

# faiss ships its own OpenMP runtime and Numba uses another; both spin-wait after each parallel
# region by default and steal each other's cores (numba's 2-thread scan ran at half speed right
# after a faiss call). Idle threads must sleep for engines to be timed fairly side by side.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import platform

import numpy as np
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", help="tiny shapes: smoke-test the benchmarks")
    parser.addoption(
        "--rows",
        type=int,
        default=None,
        help="corpus rows (default 1,000,000; 20,000 with --quick)",
    )


@pytest.fixture(scope="session")
def corpus_rows(request: pytest.FixtureRequest) -> int:
    rows = request.config.getoption("--rows")
    if rows is not None:
        return rows
    return 20_000 if request.config.getoption("--quick") else 1_000_000


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--quick"))


def machine_info() -> dict[str, object]:
    """What the benchmark ran on, stored with every result."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info.update(globals()["machine_info"]())


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


_BITS_CACHE: dict[tuple[int, int], np.ndarray] = {}


@pytest.fixture(scope="session")
def random_bits(rng: np.random.Generator):
    """``random_bits(n, nbytes) -> (n, nbytes) uint8``, cached per shape for the session."""

    def make(n: int, nbytes: int) -> np.ndarray:
        key = (n, nbytes)
        if key not in _BITS_CACHE:
            _BITS_CACHE[key] = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
        return _BITS_CACHE[key]

    return make
