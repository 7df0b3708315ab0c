"""``hamming.json``: Hamming top-k engines head to head, queries/s and fastquant's speed-ups."""

from __future__ import annotations

import numpy as np

from render.common import Images, grouped_bars, legend_below, pyplot, ratio, table

TITLE = "Hamming top-k: engines head to head"

#: Engines, with their label and colour; fastquant (numba) first, the others as compared.
STYLE = {
    "numba": ("fastquant (numba)", "#1f77b4"),
    "faiss-index": ("faiss IndexBinaryFlat", "#ff7f0e"),
    "faiss": ("faiss knn_hamming + exact ties", "#ffbb78"),
    "usearch": ("usearch exact", "#2ca02c"),
    "numpy": ("NumPy", "#7f7f7f"),
}
OTHERS = list(STYLE)[1:]


def _plot(result: dict, images: Images) -> str:
    plt, shapes = pyplot(), result["shapes"]
    bits, threads, batches = shapes["bits"], result["threads"], shapes["batches"]
    figure, axes = plt.subplots(
        len(threads), len(bits), figsize=(5.2 * len(bits), 3.4 * len(threads) + 0.6),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for row, t in zip(axes, threads):
        for axis, nbits in zip(row, bits):
            cases = {
                c["batch"]: c["median_seconds"]
                for c in result["cases"]
                if (c["bits"], c["threads"], c["k"]) == (nbits, t, 10)
            }
            series = {
                name: [b / cases[b][name] if name in cases.get(b, {}) else np.nan for b in batches]
                for name in STYLE
            }
            grouped_bars(axis, batches, series, STYLE)
            if "read" in cases.get(1, {}):
                limit = 1 / cases[1]["read"]
                axis.hlines(limit, -0.45, 0.45, colors="black", linestyles="--")
                axis.annotate("read-bandwidth limit", (0, limit), textcoords="offset points",
                              xytext=(0, 4), ha="center", fontsize=7)  # fmt: skip
            axis.set_title(f"{shapes['rows']:,} x {nbits} bits, k=10, {t} thread(s)", fontsize=9)
            axis.set_xlabel("batch (queries per call)")
            axis.set_ylabel("queries / s")
    legend_below(figure, axes[0][0], 5)
    return images.save(figure, "hamming_throughput.png", "Hamming top-10 queries per second")


def markdown(result: dict, images: Images) -> str:
    rows = []
    cases = sorted(result["cases"], key=lambda c: (c["bits"], c["batch"], c["k"], c["threads"]))
    for c in cases:
        seconds, ours = c["median_seconds"], c["median_seconds"]["numba"]
        cells = [str(c["bits"]), str(c["batch"]), str(c["k"]), str(c["threads"])]
        cells.append(f"{c['batch'] / ours:,.0f}")
        cells += [f"{seconds[o] / ours:.2f}x" if o in seconds else "" for o in OTHERS]
        cells.append(f"{100 * seconds['read'] / ours:.0f}%" if "read" in seconds else "")
        rows.append(cells)
    lines = [
        "Each round runs every engine once, in turn; figures are medians over rounds and their "
        "ratios (this machine's memory speed drifts by tens of percent over minutes). At batch 1 "
        "the round also reads the whole corpus once: the dashed line is that read rate, the "
        "physical limit of a one-query scan. Engines:",
        "",
        *[f"- `{name}`: {text}" for name, text in result["engines"].items()],
        "",
        _plot(result, images),
        "",
        *table(
            [
                "bits",
                "batch",
                "k",
                "threads",
                "numba q/s",
                *(f"numba / {o}" for o in OTHERS),
                "numba % of read bandwidth",
            ],
            rows,
        ),
    ]
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    bits, threads = max(result["shapes"]["bits"]), max(result["threads"])
    shown = [c for c in result["cases"] if (c["bits"], c["threads"], c["k"]) == (bits, threads, 10)]
    cells = [
        f"{ratio(c['median_seconds']['faiss-index'] / c['median_seconds']['numba'])} "
        f"(batch {c['batch']})"
        for c in sorted(shown, key=lambda c: c["batch"])
    ]
    rows = result["shapes"]["rows"]
    return [
        (
            f"Hamming top-10 vs faiss `IndexBinaryFlat`, {rows:,} x {bits} bits, {threads} threads",
            ", ".join(cells),
        )
    ]
