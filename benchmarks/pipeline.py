"""How much of ``fastquant index`` is spent outside the embedding model.

Usage::

    python benchmarks/pipeline.py            # MiniLM on 2,048 medicines, WordLlama on all 11,825
    python benchmarks/pipeline.py --quick    # WordLlama on 300 medicines: checks the mechanics

Each model indexes the bundled medicines (template ``demo.MEDICINE_TEMPLATE``, batches of 256,
int8 ranges from the first 2,048 rows) into a fresh store, in this process, with the machine's
threads. ``index_file`` times its phases separately: reading the parquet, embedding, and storing
(writing the records, quantizing, appending with fsync and committing); the budget is storing
at most 5% of embedding time. The model and the compiled kernels are loaded before the clock
starts (both once per process).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from fastquant import Calibration, quantize_embeddings
from fastquant.data import medicine_parquet
from fastquant.demo import MEDICINE_TEMPLATE
from fastquant.embed import DEFAULT_BATCH_ROWS, DEFAULT_CALIBRATION_ROWS, index_file
from fastquant.encoders import load_encoder
from lib import record


def measure(model: str, rows: int, work: Path) -> dict[str, object]:
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
    if report.rows_added != rows:
        raise AssertionError(f"index_file added {report.rows_added} of {rows} rows")
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


def main(argv: list[str] | None = None) -> int:
    args = record.parser(__doc__).parse_args(argv)
    record.require("wordllama", *([] if args.quick else ["sentence_transformers"]))
    run = record.Run("pipeline", args, argv)
    plan = [("wordllama", 300)] if args.quick else [("minilm", 2048), ("wordllama", 11825)]
    with tempfile.TemporaryDirectory(prefix="fastquant-pipeline-") as work:
        cases = [measure(model, rows, Path(work)) for model, rows in plan]
    run.save(
        threads="all of the machine's",
        shapes={
            "rows": {model: rows for model, rows in plan},
            "batch rows": DEFAULT_BATCH_ROWS,
            "calibration rows": DEFAULT_CALIBRATION_ROWS,
        },
        cases=cases,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
