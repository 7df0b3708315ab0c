"""Smoke test of ``float_baseline.py``: every engine on a tiny corpus, results written and sane.

The real measurement (1M rows x {384, 1024} dims) is ``python benchmarks/float_baseline.py``;
nothing here is timed or compared.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("faiss")
pytest.importorskip("usearch")

import float_baseline  # noqa: E402  (after the skips: it needs faiss and usearch)


def test_float_baseline_quick(tmp_path):
    argv = ["--quick", "--dims", "64", "384", "--batches", "1", "16", "--results-dir"]
    assert float_baseline.main([*argv, str(tmp_path)]) == 0
    report = json.loads((tmp_path / "float_baseline.json").read_text())
    assert len(report["cases"]) == 2 * 2 * 2  # dims x threads x batches
    for case in report["cases"]:
        engines = set(float_baseline.ENGINES)
        if (case["threads"], case["batch"]) != (2, 1):
            engines.remove("float32 1-thread")
        assert set(case["median_seconds"]) == engines
        assert case["speedup_over_float32"]["float32"] == 1.0
    for top1 in report["top1_is_source"].values():
        assert min(top1.values()) >= 0.9, top1
    assert (tmp_path / "float_baseline.md").read_text().startswith("# Exact search against float32")
