"""``float_baseline.json``: every engine's speed-up over faiss ``IndexFlatIP`` on float32 rows."""

from __future__ import annotations

import numpy as np

from render.common import Images, grouped_bars, legend_below, pyplot, ratio, table

TITLE = "Speed-up over float32 search"

#: Engines shown (float32 is the baseline), with their label and colour.
STYLE = {
    "faiss-sq8": ("faiss SQ8 (int8)", "#ff7f0e"),
    "usearch-i8": ("usearch i8 exact", "#2ca02c"),
    "int8": ("fastquant int8 exact", "#9467bd"),
    "binary": ("fastquant binary, no rescoring", "#1f77b4"),
    "binary+int8 x4": ("fastquant binary + int8 x4", "#17becf"),
    "faiss-binary+numpy x4": ("faiss binary + NumPy int8 x4", "#d62728"),
}
HEADLINE = {
    "binary+int8 x4": "binary search + int8 rescoring x4",
    "binary": "binary search alone (Hamming order)",
    "int8": "exact int8 search (`int8_topk`)",
}
NOTES = [
    "How to read it:",
    "",
    "- faiss `IndexFlatIP` scans the whole corpus once per query until queries x dims reaches "
    "`distance_compute_blas_threshold` (128,000 in faiss 1.15), then computes one BLAS matrix "
    "product. So at 1024-d batch 256 (262,144) float32 search is compute-bound and fast, and "
    "the int8 engines, which still scan, fall behind it; at 384-d batch 256 (98,304) it still "
    "scans.",
    "- While faiss scans, the speed-ups follow the bytes read: int8 codes are 4x smaller than "
    "float32 rows and bits 32x smaller. From batch 16 the Hamming kernel also shares every "
    "corpus read among 4 queries, while faiss reads the corpus once per query.",
    "- Rescoring 40 candidates per query costs little next to the scan (compare `binary` with "
    "`binary + int8 x4`). The gap to `faiss binary + NumPy int8 x4` is mostly faiss's slower "
    "Hamming scan (see the next section).",
    "- The machine is shared with other work (load averages above); engines that use both "
    "vCPUs suffer most when another process takes one, so ratios move by tens of percent "
    "between runs, but not the regimes above.",
]


def _best(case: dict) -> dict[str, float]:
    """Speed-ups over the faster of faiss's runs on this case's threads and on one thread."""
    return case["speedup_over_best_float32"]


def _plot(result: dict, images: Images) -> str:
    plt, shapes = pyplot(), result["shapes"]
    dims, batches, threads = shapes["dims"], shapes["batches"], max(result["threads"])
    figure, axes = plt.subplots(
        1, len(dims), figsize=(5.6 * len(dims), 4.2), squeeze=False, layout="constrained"
    )
    for axis, dim in zip(axes[0], dims):
        by_batch = {
            c["batch"]: c for c in result["cases"] if (c["dim"], c["threads"]) == (dim, threads)
        }
        series = {
            name: [_best(by_batch[b])[name] if b in by_batch else np.nan for b in batches]
            for name in STYLE
        }
        grouped_bars(axis, batches, series, STYLE)
        axis.axhline(1, color="black", linewidth=0.8)
        title = f"{shapes['rows']:,} x {dim}-d, k={shapes['k']}, {threads} thread(s)"
        if any("float32 1-thread" in c["median_seconds"] for c in by_batch.values()):
            title += "\nbatch 1: over faiss's faster one-thread run"
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("batch (queries per call)")
        axis.set_ylabel("speed-up over float32 IndexFlatIP")
        axis.bar_label(axis.containers[-2], fmt="%.0fx", fontsize=7)  # binary + int8 x4
    legend_below(figure, axes[0][0], 3)
    return images.save(figure, "speedup_over_float32.png", "Speed-up over float32 search")


def _thread_penalty(cases: list[dict]) -> str:
    """How much slower faiss answered one query on two threads than on one, if it was timed."""
    slower = [
        c["median_seconds"]["float32"] / c["median_seconds"]["float32 1-thread"]
        for c in cases
        if "float32 1-thread" in c["median_seconds"]
    ]
    if not slower:
        return ""
    return (
        f"One exception: faiss answered one query {min(slower):.1f}-{max(slower):.1f}x slower "
        "on two threads than on one, so two-thread batch-1 speed-ups (the plot, and the "
        "figures in brackets) are taken over its faster one-thread run. "
    )


def markdown(result: dict, images: Images) -> str:
    cases = result["cases"]
    rows = []
    for c in cases:
        same, best = c["speedup_over_float32"], _best(c)
        cells = [str(c["dim"]), str(c["threads"]), str(c["batch"])]
        cells.append(f"{c['queries_per_second']['float32']:,.1f}")
        cells += [
            ratio(same[n]) + (f" ({ratio(best[n])})" if best[n] != same[n] else "") for n in STYLE
        ]
        rows.append(cells)
    skipped = ", ".join(f"{t} thread(s) at batch {b}" for t, b in result["skipped_cases"])
    lines = [
        "faiss takes its threads from `omp_set_num_threads`, usearch and fastquant from "
        "`threads=`; the NumPy rescoring step is single-threaded. Every engine is timed in alternating rounds of "
        "the same run; a speed-up is float32's median / the engine's median, with faiss on the "
        "same threads as the engine. "
        + _thread_penalty(cases)
        + "Cases left out: "
        + (skipped or "none")
        + ". What each engine does:",
        "",
        *[f"- `{name}`: {text}" for name, text in result["engines"].items()],
        "",
        _plot(result, images),
        "",
        *table(
            ["dim", "threads", "batch", "float32 q/s", *(label for label, _ in STYLE.values())],
            rows,
        ),
        "",
        "Sanity check, fraction of queries whose top row is their source row: "
        + "; ".join(
            f"{dim}-d: " + ", ".join(f"{name} {v:.2f}" for name, v in top1.items())
            for dim, top1 in result["top1_is_source"].items()
        )
        + ".",
        "",
        *NOTES,
    ]
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    shapes, cases = result["shapes"], result["cases"]
    dim, threads = max(shapes["dims"]), max(result["threads"])
    shown = [c for c in cases if (c["dim"], c["threads"]) == (dim, threads)]
    return [
        (
            f"{label} vs float32 `IndexFlatIP`, {shapes['rows']:,} x {dim}-d, {threads} threads",
            ", ".join(f"{ratio(_best(c)[engine])} (batch {c['batch']})" for c in shown),
        )
        for engine, label in HEADLINE.items()
    ]
