"""How much of ``fastquant index`` is spent outside the embedding model.

Usage::

    python benchmarks/pipeline.py            # MiniLM on 2,048 medicines, WordLlama on all 11,825
    python benchmarks/pipeline.py --quick    # WordLlama on 300 medicines: checks the mechanics

Each model indexes the bundled medicines (template ``demo.MEDICINE_TEMPLATE``, batches of 256,
int8 ranges from the first 2,048 rows) into a fresh store, in this process, with the machine's
threads. ``index_file`` times its phases separately: reading the parquet, embedding, and storing
(writing the records, quantizing, appending with fsync and committing). The issue's budget is
storing <= 5% of embedding time. The model and the compiled kernels are loaded before the clock
starts (both once per process). Writes ``pipeline.json`` and ``.md`` to ``--results-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from conftest import machine_info
from fastquant import Calibration, quantize_embeddings
from fastquant.data import medicine_parquet
from fastquant.demo import MEDICINE_TEMPLATE
from fastquant.embed import index_file
from fastquant.encoders import load_encoder

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BUDGET = 0.05


def run(model: str, rows: int, work: Path) -> dict[str, object]:
    """Index the first ``rows`` medicines with ``model``; the phase times of that run."""
    source = work / f"medicines-{rows}.parquet"
    if not source.exists():
        pq.write_table(pq.read_table(medicine_parquet()).slice(0, rows), source)
    encoder = load_encoder(model)  # loading the model is not indexing time, nor is loading
    sample = encoder.encode(["warm-up", "kernels"])  # the compiled quantization kernels (~0.3 s,
    Calibration.from_embeddings(sample).quantize(sample)  # once per process)
    quantize_embeddings(sample, "ubinary")
    report = index_file(
        source,
        work / f"store-{model}-{rows}",
        template=MEDICINE_TEMPLATE,
        model=encoder,
        progress=False,
    )
    return {
        "model": model,
        "dim": encoder.dim,
        "rows": report.rows_added,
        "seconds": report.seconds,
        "seconds_reading": report.seconds_reading,
        "seconds_embedding": report.seconds_embedding,
        "seconds_storing": report.seconds_storing,
        "rows_per_second": report.rows_added / report.seconds,
        "storing_share_of_embedding": report.storing_share,
    }


def markdown(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
        f"all threads. Command: `{result['command']}`",
        "",
        "| model | dim | rows | rows/s | embedding s | storing s | reading s | storing / embedding |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        lines.append(
            f"| {case['model']} | {case['dim']} | {case['rows']:,} | {case['rows_per_second']:,.0f} "
            f"| {case['seconds_embedding']:.2f} | {case['seconds_storing']:.3f} "
            f"| {case['seconds_reading']:.3f} | {case['storing_share_of_embedding']:.2%} |"
        )
    lines += ["", f"Budget: storing at most {BUDGET:.0%} of embedding time."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="WordLlama on 300 rows only")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    plan = [("wordllama", 300)] if args.quick else [("minilm", 2048), ("wordllama", 11825)]
    with tempfile.TemporaryDirectory(prefix="fastquant-pipeline-") as work:
        cases = [run(model, rows, Path(work)) for model, rows in plan]
    result = {
        "machine": machine_info(),
        "command": "python benchmarks/pipeline.py" + (" --quick" if args.quick else ""),
        "cases": cases,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "pipeline.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results_dir / "pipeline.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
