"""``shard_scaling.json``: sharded search on a local Dask cluster against one store."""

from __future__ import annotations

from render.common import Images, table

TITLE = "Sharded search on a local Dask cluster"


def markdown(result: dict, images: Images) -> str:
    engines, batches = list(result["engines"]), result["batches"]
    ratios = list(next(iter(batches.values()))["ratios"])
    dask = result["machine"]["versions"].get("distributed", "?")
    lines = [
        f"dask {dask}, {result['rounds']} alternating rounds; medians in ms per query. Every "
        "engine returned "
        "exactly the single store's scores and ids. Engines (each worker process has one "
        "thread, and stands for one machine):",
        "",
        *[f"- `{name}`: {text}" for name, text in result["engines"].items()],
        "- `client-merge` (not an engine): the client's own merge of the shards' Hamming lists "
        "and its final top k, timed alone.",
        "",
        *table(
            ["batch", *engines, "client-merge"],
            [
                [
                    batch,
                    *(f"{b['ms_per_query'][n]:.3f}" for n in engines),
                    f"{b['client_merge_ms_per_query']:.4f}",
                ]
                for batch, b in batches.items()
            ],
        ),
        "",
        *table(
            ["batch", *ratios],
            [[batch, *(f"{b['ratios'][n]:.2f}" for n in ratios)] for batch, b in batches.items()],
        ),
        "",
        "What it means for a real cluster: [docs/distributed.md](distributed.md#benchmark).",
    ]
    return "\n".join(lines)
