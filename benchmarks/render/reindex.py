"""``reindex.json``: ``fastquant index --key-column`` on an input with 1% of rows changed, against a
full rebuild."""

from __future__ import annotations

from render.common import Images, table

TITLE = "Re-indexing a changed input by key"
TARGET = 0.05


def markdown(result: dict, images: Images) -> str:
    builds = result["rebuild_seconds"]
    rebuild = sorted(builds)[len(builds) // 2] if len(builds) % 2 else sum(builds) / len(builds)
    rows = [
        [str(c["round"]), f"{c['rows_changed']:,}", f"{c['seconds']:.2f}",
         f"{c['seconds_embedding']:.2f}", f"{c['seconds_reading']:.2f}",
         f"{c['seconds_storing']:.2f}", f"{c['share_of_rebuild']:.1%}"]
        for c in result["rounds"]
    ]  # fmt: skip
    return "\n".join(
        [
            f"The bundled medicines, keyed by row number, are indexed with `{result['model']}`; "
            f"then, in each round, {result['shapes']['changed share']:.0%} of the rows get a "
            'changed text and `index_file(..., key_column="row")` brings the same store up to '
            "date: it reads the input and the stored records, embeds only the changed rows, "
            "appends them and deletes the rows they replace. A full rebuild (index the whole "
            f"input into a fresh store) took {', '.join(f'{s:.1f}' for s in builds)} s "
            f"(median {rebuild:.1f} s). The re-indexed store answers 20 queries exactly like a "
            "fresh build of the final input.",
            "",
            *table(
                [
                    "round",
                    "rows changed",
                    "re-index s",
                    "embedding s",
                    "reading s",
                    "storing s",
                    "vs full rebuild",
                ],
                rows,
            ),
            "",
            f"Target: at most {TARGET:.0%} of the rebuild time. The rest of a re-index (besides "
            "embedding, reading and storing) is comparing the input with the stored records "
            "and the one delete.",
        ]
    )


def headline(result: dict) -> list[tuple[str, str]]:
    shares = [c["share_of_rebuild"] for c in result["rounds"]]
    return [
        (
            f"Re-index by key, {result['shapes']['changed share']:.0%} of "
            f"{result['shapes']['rows']:,} rows changed ({result['model']}), vs a full rebuild",
            f"{min(shares):.1%}-{max(shares):.1%} of the rebuild time",
        )
    ]
