"""Smoke test of ``shard_scaling.py``: sharded search on local Dask clusters of 1 and 2 workers.

Runs the script (its own process, as Dask's worker processes re-import the main module) on a
20k-row corpus in 2 shards with ``--quick``: it builds the stores, starts both clusters, checks
that every engine returns exactly the single store's answer and writes its report. The real
measurement, 1M x 1024-d, is ``python benchmarks/shard_scaling.py`` (results in
``benchmarks/results/distributed.md``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

SCRIPT = Path(__file__).resolve().parent / "shard_scaling.py"


def test_shard_scaling(tmp_path, quick, corpus_rows):
    command = [
        sys.executable, str(SCRIPT), "--root", str(tmp_path / "stores"),
        "--results-dir", str(tmp_path / "results"), "--rows", str(corpus_rows),
    ] + (["--quick"] if quick else [])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    name = "distributed-quick" if quick else "distributed"
    report = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert report["rows"] == corpus_rows and report["shards"] == 2
    for result in report["batches"].values():
        assert result["identical_to_single"]
        assert all(ms > 0 for ms in result["ms_per_query"].values())
    assert (tmp_path / "results" / f"{name}.md").read_text().startswith("# Sharded search")
