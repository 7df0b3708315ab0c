"""``store.json``: warm rescoring, store search against the bare scan, and the append rate."""

from __future__ import annotations

from render.common import Images, ratio

TITLE = "CorpusStore: rescoring, search and appends"


def markdown(result: dict, images: Images) -> str:
    rescoring, append, shapes = result["rescoring"], result["append"], result["shapes"]
    us, share = rescoring["median_us_per_query"], append["share"]
    lines = [
        "Store of normalized gaussian rows; engines compared in alternating rounds of one run.",
        "",
        f"- Warm int8 rescoring of {rescoring['candidates']} candidates x {shapes['store dim']}-d, "
        f"one query at a time: {us['store']:.1f} us per query from the store's memory-mapped "
        f"chunks ({us['store-no-prefetch']:.1f} us without the `madvise` prefetch), "
        f"{us['public-in-ram']:.1f} us with `rescore_int8` on an in-memory array.",
    ]
    for case in result["search"]:
        over = case["over_kernel"]
        lines.append(
            f"- `store.search`, batch {case['batch']}: {case['ms_per_query']['search']:.2f} ms "
            f"per query, {ratio(over['search'])} the bare Hamming scan of the same bits in "
            f"memory (no rescoring {ratio(over['search-none'])}, bit rescoring "
            f"{ratio(over['search-bits'])}, bits held in memory {ratio(over['search-bits-in-memory'])})."
        )
    lines.append(
        f"- Append {append['rows']:,} x {shapes['append dim']}-d in batches of "
        f"{append['batch_rows']:,}: {append['rows_per_minute'] / 1e6:.0f}M rows per minute "
        f"(quantization {100 * share['quantize']:.0f}%, CRC-32 {100 * share['crc']:.0f}%, "
        f"writes, fsync and commits {100 * share['io_and_commit']:.0f}%)."
    )
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    shapes = result["shapes"]
    cells = [f"{ratio(c['over_kernel']['search'])} (batch {c['batch']})" for c in result["search"]]
    return [
        (
            f"Store search, {shapes['store rows']:,} x {shapes['store dim']}-d, int8 rescoring "
            f"x{shapes['rescore multiplier']}, vs the bare Hamming scan",
            ", ".join(cells),
        )
    ]
