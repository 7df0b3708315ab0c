"""``pipeline.json``: the share of ``fastquant index``'s time spent outside the embedding model."""

from __future__ import annotations

from render.common import Images, table

TITLE = "Indexing pipeline: time outside the embedding model"
BUDGET = 0.05


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
    ]
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    return [
        (
            "Indexing: quantizing and storing, share of embedding time",
            ", ".join(
                f"{c['storing_share_of_embedding']:.2%} ({c['model']}, {c['rows_per_second']:,.0f} rows/s)"
                for c in result["cases"]
            ),
        )
    ]
