"""``encoders.json``: all-MiniLM-L6-v2 on PyTorch and ONNX Runtime: speed, quality, cold demo."""

from __future__ import annotations

from render.common import Images, table

TITLE = "Text encoders: PyTorch and ONNX Runtime"


def markdown(result: dict, images: Images) -> str:
    names = result["encoders"]
    lines = [
        "Rows per second of each encoder on the demo's medicine texts, by rows per `encode` "
        "call, and the ratio to PyTorch float32 (alternating rounds):",
        "",
        *table(
            ["rows per encode call", *(f"{n} rows/s (x torch)" for n in names)],
            [
                [str(row["batch"])]
                + [f"{row[n]['rows_per_second']:.0f} ({row[n]['vs_torch']:.2f}x)" for n in names]
                for row in result["speed"]
            ],
        ),
        "",
        "Retrieval with each encoder's own embeddings (exact float search) against PyTorch's: "
        "NDCG@10 kept (95% interval, queries resampled in pairs), recall@10 of PyTorch's top 10, "
        "and the cosine between the two embeddings of the same texts:",
        "",
        *table(
            [
                "corpus x queries (labels)",
                "encoder",
                "NDCG@10",
                "kept (95% interval)",
                "recall@10 vs torch",
                "cosine min / mean",
            ],
            [
                [
                    f"{row['corpus']} ({row['corpus_rows']:,}) x {row['queries']} "
                    f"({row['query_count']}; {row['labels']})",
                    n,
                    f"{row[n]['ndcg']:.4f}",
                    f"{row[n]['ndcg_kept']:.2%} ({row[n]['ndcg_kept_95'][0]:.1%}-"
                    f"{row[n]['ndcg_kept_95'][1]:.1%})",
                    f"{row[n]['recall_vs_torch']:.4f}",
                    f"{row[n]['cosine_min']:.4f} / {row[n]['cosine_mean']:.5f}",
                ]
                for row in result["quality"]
                for n in names
            ],
        ),  # fmt: skip
        "",
        f"Default: {result['default']['encoder']} (NDCG@10 kept >= "
        f"{result['default']['min_ndcg_kept']:.2%} on the sets with exact labels).",
    ]
    summary = result["demo"]["summary"]
    if summary:
        lines += [
            "",
            "`fastquant demo` end to end from a cold cache (the ONNX export included):",
            "",
            *table(
                ["model", "seconds (median)", "speed-up"],
                [[m, f"{s['seconds']:.1f}", f"{s['speedup']:.2f}x"] for m, s in summary.items()],
            ),
        ]
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    fastest = max(result["speed"], key=lambda row: row["minilm-onnx-int8"]["vs_torch"])
    summary = list(result["demo"]["summary"].items())
    demo = (
        f"; cold `fastquant demo` {summary[-1][1]['speedup']:.2f}x faster"
        if len(summary) > 1
        else ""
    )
    return [
        (
            "Text encoder: ONNX int8 MiniLM vs PyTorch, 2 threads",
            f"up to {fastest['minilm-onnx-int8']['vs_torch']:.1f}x rows/s{demo}",
        )
    ]
