"""Turn a pytest-benchmark JSON of ``test_bench_hamming.py`` into ratio tables (Markdown).

Usage: ``python benchmarks/summarize.py benchmarks/results/hamming.json``. Rates use the median
round; every speed-up is a ratio measured in the same run, since these machines are noisy.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def load(path: str) -> tuple[dict, list[dict]]:
    with open(path) as f:
        data = json.load(f)
    return data.get("machine_info", {}), data["benchmarks"]


def hamming_table(benchmarks: list[dict]) -> list[str]:
    """Queries per second per backend and numba's speed-up over each other backend."""
    bandwidth = {
        (b["extra_info"]["nbits"], b["extra_info"]["threads"]): b["extra_info"]["bytes"]
        / b["stats"]["median"]
        for b in benchmarks
        if b["extra_info"].get("kind") == "bandwidth"
    }
    rates: dict[tuple, dict[str, float]] = defaultdict(dict)
    for b in benchmarks:
        info = b["extra_info"]
        if info.get("kind") != "hamming":
            continue
        key = (
            info["nbits"],
            info["batch"],
            info["k"],
            info["threads"],
            info["rows"],
            info["bytes"],
        )
        rates[key][info["backend"]] = info["batch"] / b["stats"]["median"]
    others = ["faiss-index", "faiss", "usearch", "numpy"]
    lines = [
        "| rows | bits | batch | k | threads | numba q/s | "
        + " | ".join(f"{o} q/s" for o in others)
        + " | "
        + " | ".join(f"numba / {o}" for o in others)
        + " | numba % of bandwidth |",
        "|" + "---|" * (7 + 2 * len(others) + 1),
    ]
    for (nbits, batch, k, threads, rows, nbytes), by_backend in sorted(rates.items()):
        ours = by_backend.get("numba")
        cells = [f"{rows:,}", str(nbits), str(batch), str(k), str(threads), _fmt(ours)]
        cells += [_fmt(by_backend.get(o)) for o in others]
        cells += [_ratio(ours, by_backend.get(o)) for o in others]
        limit = bandwidth.get((nbits, threads))
        scan_rate = ours * nbytes / batch if ours and batch == 1 else None
        cells.append(f"{100 * scan_rate / limit:.0f}%" if scan_rate and limit else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for (nbits, threads), rate in sorted(bandwidth.items()):
        lines.append(
            f"- memory read bandwidth, {nbits}-bit corpus, {threads} thread(s): {rate / 1e9:.1f} GB/s"
        )
    return lines


def head_to_head_table(benchmarks: list[dict]) -> list[str]:
    """Ratios from alternating rounds (``test_bench_head_to_head.py``): the figures to quote."""
    others = ["faiss-index", "faiss", "usearch", "numpy"]
    lines = [
        "| rows | bits | batch | k | threads | numba q/s | "
        + " | ".join(f"numba / {o}" for o in others)
        + " | numba % of read bandwidth |",
        "|" + "---|" * (6 + len(others) + 1),
    ]
    rows = sorted(
        (b["extra_info"] for b in benchmarks if b["extra_info"].get("kind") == "head-to-head"),
        key=lambda i: (i["nbits"], i["batch"], i["k"], i["threads"]),
    )
    for info in rows:
        medians = info["median_seconds"]
        ours = medians["numba"]
        cells = [
            f"{info['rows']:,}",
            str(info["nbits"]),
            str(info["batch"]),
            str(info["k"]),
            str(info["threads"]),
        ]
        cells.append(_fmt(info["batch"] / ours))
        cells += [f"{medians[o] / ours:.2f}x" if o in medians else "" for o in others]
        cells.append(f"{100 * medians['read'] / ours:.0f}%" if "read" in medians else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fmt(rate: float | None) -> str:
    return f"{rate:,.0f}" if rate else ""


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else ""


def main(argv: list[str]) -> None:
    machine, benchmarks = load(argv[1])
    print(f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores\n")
    head_to_head = head_to_head_table(benchmarks)
    if len(head_to_head) > 2:
        print("## Head to head (alternating rounds; quote these ratios)\n")
        print("\n".join(head_to_head))
        print()
    separate = hamming_table(benchmarks)
    if len(separate) > 3:
        print("## Separately timed benchmarks (absolute rates; ratios drift with the machine)\n")
        print("\n".join(separate))


if __name__ == "__main__":
    main(sys.argv)
