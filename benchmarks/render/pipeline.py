"""``pipeline.json``: the share of ``fastquant index``'s time spent outside the embedding model, and
the ingestion rate of precomputed embeddings."""

from __future__ import annotations

from render.common import Images, table

TITLE = "Indexing pipeline: time outside the embedding model"
BUDGET = 0.05
#: Rows per minute that ingesting precomputed embeddings must reach.
TARGET_ROWS_PER_MINUTE = 1_000_000


def markdown(result: dict, images: Images) -> str:
    rows = [
        [c["model"], str(c["dim"]), f"{c['rows']:,}", f"{c['rows_per_second']:,.0f}",
         f"{c['seconds_embedding']:.2f}", f"{c['seconds_storing']:.3f}",
         f"{c['seconds_reading']:.3f}", f"{c['storing_share_of_embedding']:.2%}"]
        for c in result["cases"]
    ]  # fmt: skip
    lines = [
        "Each model indexes the bundled medicines into a fresh store with `index_file`, which "
        "times its phases: reading the parquet, embedding, and storing (writing the records, "
        "quantizing, appending with fsync and committing). The model and the compiled kernels "
        "are loaded before the clock starts.",
        "",
        *table(
            [
                "model",
                "dim",
                "rows",
                "rows/s",
                "embedding s",
                "storing s",
                "reading s",
                "storing / embedding",
            ],
            rows,
        ),
        "",
        f"Budget: storing at most {BUDGET:.0%} of embedding time.",
        *_ingestion(result.get("ingestion", [])),
    ]
    return "\n".join(lines)


def _ingestion(cases: list[dict]) -> list[str]:
    """The table of precomputed embeddings indexed from parquet and ``.npy``."""
    if not cases:
        return []
    rows = [
        [c["input"], f"{c['rows']:,} x {c['dim']} {c['dtype']}", f"{c['file_bytes'] / 1e9:.2f} GB",
         f"{c['rows_per_second']:,.0f}", f"{c['rows_per_second'] * 60 / 1e6:.1f}M",
         f"{c['mb_per_second']:,.0f}", f"{c['seconds_reading']:.1f}",
         f"{c['seconds_checking']:.1f}", f"{c['seconds_storing']:.1f}",
         f"{c['share_outside_reading']:.0%}"]
        for c in cases
    ]  # fmt: skip
    return [
        "",
        "### Precomputed embeddings in",
        "",
        "`fastquant index INPUT --embedding-column COLUMN` (parquet) and `fastquant index "
        "--embeddings FILE.npy` index vectors computed elsewhere, with the same batches, "
        "calibration, commits and records as text. The input file is evicted from the page "
        "cache first, so it is read from the disk. MB/s counts the float32 vectors ingested; "
        "reading is reading and decoding the file, checking is converting and checking the "
        "vectors (for `.npy` the disk is read there, through the memory map), storing is "
        "quantizing, writing the records and appending with fsync.",
        "",
        *table(
            [
                "input",
                "embeddings",
                "file",
                "rows/s",
                "rows/min",
                "MB/s",
                "reading s",
                "checking s",
                "storing s",
                "outside reading",
            ],
            rows,
        ),  # fmt: skip
        "",
        f"Target: at least {TARGET_ROWS_PER_MINUTE / 1e6:.0f}M rows per minute.",
    ]


def headline(result: dict) -> list[tuple[str, str]]:
    lines = [
        (
            "Indexing: quantizing and storing, share of embedding time",
            ", ".join(
                f"{c['storing_share_of_embedding']:.2%} ({c['model']}, {c['rows_per_second']:,.0f} rows/s)"
                for c in result["cases"]
            ),
        )
    ]
    cases = result.get("ingestion", [])
    if cases:
        shape = f"{cases[0]['rows']:,} x {cases[0]['dim']}"
        lines.append(
            (
                f"Indexing precomputed embeddings ({shape} float32, from disk)",
                ", ".join(
                    f"{c['rows_per_second'] * 60 / 1e6:.1f}M rows/min from {c['input']} "
                    f"({c['mb_per_second']:,.0f} MB/s)"
                    for c in cases
                ),
            )
        )
    return lines
