"""How much of ``fastquant index`` is spent outside the embedding model, and how fast it ingests
precomputed embeddings.

Usage::

    python benchmarks/pipeline.py            # MiniLM on 2,048 medicines, WordLlama on all 11,825;
                                             # 1M x 1024 float32 embeddings from parquet and .npy
    python benchmarks/pipeline.py --quick    # WordLlama on 300 medicines, 5,000 x 64 embeddings

Each model indexes the bundled medicines (template ``demo.MEDICINE_TEMPLATE``, batches of 256,
int8 ranges from the first 2,048 rows) into a fresh store, in this process, with the machine's
threads. ``index_file`` times its phases separately: reading the parquet, embedding, and storing
(writing the records, quantizing, appending with fsync and committing); the budget is storing
at most 5% of embedding time. The model and the compiled kernels are loaded before the clock
starts (both once per process).

Precomputed embeddings (gaussian float32 rows; an ``id`` column beside them in parquet, as a
``fixed_size_list`` column in row groups of 16,384 rows, snappy-compressed as pyarrow writes by
default) are indexed with ``index_file(..., embedding_column=...)`` and ``index_file(None,
embeddings=FILE.npy)`` (same batches, calibration and commits as text), the input file evicted
from the page cache first (``posix_fadvise``), so that it is read from the disk. Reading covers
reading and decoding the file and checking the vectors (for ``.npy`` the disk is read there, through
the memory map); the rest is quantizing and storing. The target is at least 1M rows per minute.
Each store's answers are checked: every sampled row finds itself first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
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


#: Rows written (and read back) per parquet row group and ``.npy`` block.
WRITE_ROWS = 16_384


def write_embeddings(work: Path, rows: int, dim: int) -> tuple[Path, Path]:
    """``(parquet, npy)`` files of the same ``rows x dim`` gaussian float32 embeddings."""
    parquet, npy = work / f"embeddings-{rows}x{dim}.parquet", work / f"embeddings-{rows}x{dim}.npy"
    rng = np.random.default_rng(0)
    kind = pa.list_(pa.float32(), dim)
    array = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(rows, dim))
    with pq.ParquetWriter(parquet, pa.schema([("id", pa.int64()), ("embedding", kind)])) as out:
        for first in range(0, rows, WRITE_ROWS):
            block = rng.standard_normal((min(WRITE_ROWS, rows - first), dim), dtype=np.float32)
            array[first : first + len(block)] = block
            column = pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), dim)
            ids = np.arange(first, first + len(block))
            out.write_table(pa.table({"id": ids, "embedding": column}))
    array.flush()
    del array
    return parquet, npy


def evict(file: Path) -> None:
    """Drop ``file`` from the page cache, so that the next read comes from the disk."""
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure_ingestion(kind: str, file: Path, rows: int, dim: int, work: Path) -> dict[str, object]:
    """Index the embeddings of ``file`` (``kind``: parquet or npy), from the disk; its phase times."""
    from fastquant.texts import TextIndex

    evict(file)
    store = work / f"store-{kind}"
    if kind == "parquet":
        report = index_file(file, store, embedding_column="embedding", progress=False)
    else:
        report = index_file(None, store, embeddings=file, progress=False)
    if report.rows_added != rows:
        raise AssertionError(f"index_file added {report.rows_added} of {rows} rows")
    sample = np.random.default_rng(1).choice(rows, 8, replace=False)
    array = np.load(file.with_suffix(".npy"), mmap_mode="r")
    with TextIndex.open(store) as text_index:
        found = [r.hits[0].id for r in text_index.search_vectors(array[np.sort(sample)], 1)]
    if found != np.sort(sample).tolist():
        raise AssertionError(f"rows {np.sort(sample).tolist()} found {found} first")
    reading = report.seconds_reading + report.seconds_embedding
    return {
        "input": kind,
        "rows": rows,
        "dim": dim,
        "dtype": "float32",
        "file_bytes": file.stat().st_size,
        "seconds": report.seconds,
        "seconds_reading": report.seconds_reading,
        "seconds_checking": report.seconds_embedding,
        "seconds_storing": report.seconds_storing,
        "rows_per_second": rows / report.seconds,
        "mb_per_second": rows * dim * 4 / report.seconds / 1e6,
        "share_outside_reading": 1 - reading / report.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    args = record.parser(__doc__).parse_args(argv)
    record.require("wordllama", *([] if args.quick else ["sentence_transformers"]))
    run = record.Run("pipeline", args, argv)
    plan = [("wordllama", 300)] if args.quick else [("minilm", 2048), ("wordllama", 11825)]
    rows, dim = (5_000, 64) if args.quick else (1_000_000, 1024)
    with tempfile.TemporaryDirectory(prefix="fastquant-pipeline-") as work:
        cases = [measure(model, n, Path(work)) for model, n in plan]
        files = dict(zip(("parquet", "npy"), write_embeddings(Path(work), rows, dim)))
        ingestion = [
            measure_ingestion(kind, file, rows, dim, Path(work)) for kind, file in files.items()
        ]
    run.save(
        threads="all of the machine's",
        shapes={
            "rows": {model: n for model, n in plan},
            "batch rows": DEFAULT_BATCH_ROWS,
            "calibration rows": DEFAULT_CALIBRATION_ROWS,
            "embeddings": [rows, dim],
        },
        cases=cases,
        ingestion=ingestion,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
