"""``asymmetric.json``: end-to-end search speed of the candidate scans against faiss RaBitQ."""

from __future__ import annotations

from render.common import Images, legend_below, pyplot, ratio, table

TITLE = "Candidate scans: end-to-end speed against faiss RaBitQ"

#: Engines, with their label, colour and marker; fastquant's default first.
STYLE = {
    "asymmetric": ("fastquant asymmetric (default)", "#d62728", "o"),
    "asymmetric-exact": ("fastquant asymmetric exact", "#9467bd", "P"),
    "hamming+asymmetric": ("fastquant Hamming x10 -> asymmetric", "#e377c2", "s"),
    "hamming": ("fastquant Hamming, sign bits (0.1)", "#17becf", "^"),
    "faiss RaBitQ FastScan": ("faiss IndexRaBitQFastScan qb=4", "k", "D"),
    "faiss RaBitQ": ("faiss IndexRaBitQ qb=4", "#7f7f7f", "v"),
}


def _plot(result: dict, images: Images) -> str | None:
    """Recall@10 (real embeddings, x4) against queries/s at each batch size, 384-d corpus."""
    recall = result.get("recall")
    shape = next((s for s in result["results"] if s["dim"] == 384), None)
    if recall is None or shape is None:
        return None
    plt = pyplot()
    cases = shape["cases"]
    figure, axes = plt.subplots(
        1, len(cases), figsize=(4.4 * len(cases), 3.6), squeeze=False, layout="constrained"
    )
    for axis, case in zip(axes[0], cases):
        for name, (label, colour, marker) in STYLE.items():
            axis.scatter(
                case["queries_per_second"][name],
                recall["recall_by_multiplier"][name]["4"],
                color=colour,
                marker=marker,
                s=40,
                label=label,
            )
        axis.set_xscale("log")
        axis.grid(alpha=0.3)
        axis.set_title(f"{shape['rows']:,} x {shape['dim']}, batch {case['batch']}", fontsize=8)
        axis.set_xlabel("queries/s (2 threads, k=10, 40 candidates + int8)")
    axes[0][0].set_ylabel(f"recall@10, x4\n{recall['model'].split('/')[-1]}, {recall['case']}")
    legend_below(figure, axes[0][0], 3)
    return images.save(figure, "recall_vs_speed.png", "Recall@10 against queries per second")


def _speed_table(shape: dict) -> list[str]:
    rows = []
    for case in shape["cases"]:
        qps = case["queries_per_second"]
        for name, (label, _, _) in STYLE.items():
            rows.append(
                [
                    str(case["batch"]),
                    label,
                    f"{qps[name]:,.0f}",
                    ratio(case["vs_faiss_fastscan"][name]),
                    ratio(case["vs_hamming"][name]),
                ]
            )
    columns = ["batch", "engine", "queries/s", "vs faiss FastScan", "vs Hamming (0.1)"]
    return table(columns, rows)


def markdown(result: dict, images: Images) -> str:
    lines = [
        "Every engine answers k = 10 from 40 candidates rescored against the same int8 codes, "
        "in alternating rounds: "
        + "; ".join(f"`{name}`: {what}" for name, what in result["engines"].items())
        + ". Exhaustive scans cost the same whatever the data, so the corpora are normalized "
        "gaussian rows and the plot pairs these speeds with the recall each engine reaches on "
        "real embeddings (the quality section).",
    ]
    plot = _plot(result, images)
    if plot:
        lines += ["", plot]
    for shape in result["results"]:
        one = shape["cases"][0]
        lines += [
            "",
            f"**{shape['rows']:,} x {shape['dim']}** (bits and row factors scanned: "
            f"{shape['scanned_bytes'] / 1e6:,.0f} MB):",
            "",
            *_speed_table(shape),
        ]
        if "share_of_read_bandwidth" in one:
            lines += [
                "",
                f"At batch 1 the default scan reads at {one['share_of_read_bandwidth']:.0%} of the "
                f"bandwidth probe ({one['read_gb_per_s']:.1f} GB/s on the same bytes, same rounds).",
            ]
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    rows = []
    for shape in result["results"]:
        cases = shape["cases"]
        fastscan = ", ".join(
            f"{ratio(c['vs_faiss_fastscan']['asymmetric'])} (batch {c['batch']})" for c in cases
        )
        rows.append(
            (
                f"Default search (asymmetric + int8 x4) vs faiss IndexRaBitQFastScan qb=4, "
                f"{shape['rows']:,} x {shape['dim']}, 2 threads",
                f"{fastscan}; batch 1: {ratio(cases[0]['vs_hamming']['asymmetric'])} "
                f"the Hamming search of 0.1",
            )
        )
    return rows
