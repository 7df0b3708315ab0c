"""``report.py`` on the committed results: the page and every plot are produced, gaps are named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

import report  # noqa: E402  (after the skip: it plots with matplotlib)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The plot each results file adds to the page.
PLOTS = {
    "head_to_head": ["hamming_throughput.png"],
    "float_baseline": ["speedup_over_float32.png"],
    "quality": ["recall_vs_multiplier.png", "ndcg_retention.png"],
}


def test_report_from_committed_results(tmp_path):
    assert report.main(["--results-dir", str(report.RESULTS_DIR), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "benchmarks.md").read_text()
    assert page.startswith("# Benchmarks") and "## Headline" in page
    for title, stem, _ in report.SECTIONS:
        assert f"## {title}" in page
        present = stem is None or (report.RESULTS_DIR / f"{stem}.json").exists()
        assert present != (f"No `benchmarks/results/{stem}.json` yet" in page)
        assert "Could not read" not in page
        for name in PLOTS.get(stem, []) if present else []:
            assert f"(img/{name})" in page
            assert (tmp_path / "img" / name).read_bytes().startswith(PNG_MAGIC)


def test_report_names_missing_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(report.RESULTS_DIR / "larger_than_ram.json", results)
    pipeline = '{"cases": [{"model": "m", "io_share": 0.25}], "rows": 7, "more": {"x": 1}}'
    (results / "pipeline.json").write_text(pipeline)
    report.main(["--results-dir", str(results), "--out", str(tmp_path / "docs")])
    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "*No `benchmarks/results/quality.json` yet.*" in page
    assert "| m | 25.0% |" in page and "- `rows`: 7" in page
    assert "m io share 25.0%" in page  # in the headline
    assert not any(Path(tmp_path / "docs" / "img").glob("*.png"))
