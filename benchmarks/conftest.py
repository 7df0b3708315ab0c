"""pytest in ``benchmarks/`` runs smoke tests only (``test_smoke_*.py``); benchmarks are scripts.

Each smoke test runs a benchmark script with ``--quick`` (tiny shapes, nothing timed that
matters) or renders the committed results. ``--quick`` is accepted so that the CI command
``pytest tests benchmarks --quick`` keeps working; the smoke tests are always quick.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick", action="store_true", help="accepted for CI; the smoke tests are always quick"
    )
