"""``report.py`` on the committed results: every section and plot, and the page is up to date."""

from __future__ import annotations

import json
import re
import shutil

import pytest

pytest.importorskip("matplotlib")

import report  # noqa: E402  (after the skip: renderers plot with matplotlib)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_from_committed_results(tmp_path):
    assert report.main(["--out", str(tmp_path)]) == 0
    page = (tmp_path / "benchmarks.md").read_text()
    assert page.startswith("# Benchmarks") and "## Headline" in page
    for name in report.SECTIONS:
        assert f"## {report.renderer(name).TITLE}" in page
    assert "yet.*" not in page and "--quick` run" not in page
    images = re.findall(r"\]\(img/([^)]+)\)", page)
    assert images and len(set(images)) == len(images)
    for image in images:
        assert (tmp_path / "img" / image).read_bytes().startswith(PNG_MAGIC)
    committed = report.OUT_DIR / "benchmarks.md"
    assert page == committed.read_text(), "docs/benchmarks.md is stale: run benchmarks/report.py"


def test_report_names_missing_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(report.RESULTS_DIR / "pipeline.json", results)
    report.main(["--results-dir", str(results), "--out", str(tmp_path / "docs")])
    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert (
        "*No `benchmarks/results/quality.json` yet.* Produce it with "
        "`python benchmarks/quality.py`" in page
    )
    assert "| wordllama | 256 | 11,825 |" in page  # the pipeline section
    assert "2.78% (wordllama" in page  # its headline rows
    assert "3.8M rows/min from npy (257 MB/s)" in page
    assert "Memory, 1M x 1024-d" in page  # computed, needs no result
    assert not list((tmp_path / "docs" / "img").glob("*.png"))


def test_report_stops_on_a_result_its_renderer_cannot_read(tmp_path):
    result = json.loads((report.RESULTS_DIR / "pipeline.json").read_text())
    del result["cases"][0]["rows_per_second"]
    (tmp_path / "pipeline.json").write_text(json.dumps(result))
    with pytest.raises(RuntimeError, match=r"render/pipeline.py cannot read pipeline.json"):
        report.main(["--results-dir", str(tmp_path), "--out", str(tmp_path / "docs")])
