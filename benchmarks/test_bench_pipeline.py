"""Smoke test of ``pipeline.py`` (the share of indexing time outside the embedding model)."""

from __future__ import annotations

import json

from pipeline import main


def test_pipeline_quick(tmp_path):
    assert main(["--quick", "--results-dir", str(tmp_path)]) == 0
    (case,) = json.loads((tmp_path / "pipeline.json").read_text())["cases"]
    assert case["model"] == "wordllama" and case["rows"] == 300
    assert case["seconds_embedding"] > 0 and case["seconds_storing"] > 0
    assert "storing / embedding" in (tmp_path / "pipeline.md").read_text()
