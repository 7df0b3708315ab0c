"""Every benchmark script, run with ``--quick``: it checks its own answers, writes its result
file with the common keys (``lib/record.py``), and its renderer renders that file.

Nothing here is a measurement: the shapes are tiny and no timing is looked at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

import report  # noqa: E402  (after the skip: renderers plot with matplotlib)
from lib.record import SKIPPED  # noqa: E402
from render.common import Images  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted(
    path.stem
    for path in HERE.glob("*.py")
    if path.stem not in ("conftest", "report") and not path.stem.startswith("test_")
)
COMMON_KEYS = {
    "benchmark", "command", "quick", "commit", "machine", "load_average", "seconds", "threads",
    "shapes",
}  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_benchmark_has_a_renderer_and_a_section():
    measured = {name for name in report.SECTIONS if not report.computed(name)}
    assert set(SCRIPTS) == measured


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_run_writes_a_result_that_renders(name, tmp_path):
    # Stores the scripts keep between runs go to this test's own cache folder.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, str(HERE / f"{name}.py"), "--quick", "--results-dir", str(tmp_path)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=900, check=False
    )
    if done.returncode == SKIPPED:
        pytest.skip(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert COMMON_KEYS <= set(result)
    assert result["benchmark"] == name and result["quick"] is True
    assert result["command"].startswith(f"python benchmarks/{name}.py --quick")
    images = Images(tmp_path / "img")
    text = "\n".join(report.section(name, result, images))
    assert "A `--quick` run: tiny shapes" in text and f"`{result['command']}`" in text
    assert all(path.read_bytes().startswith(PNG_MAGIC) for path in images.saved)
    module = report.renderer(name)
    if hasattr(module, "headline"):
        assert all(what and figure for what, figure in module.headline(result))
