"""Turn the saved benchmark results into ``docs/benchmarks.md`` and its PNG plots.

Usage::

    python benchmarks/report.py                       # benchmarks/results/*.json -> docs/
    python benchmarks/report.py --results-dir R --out D

Reads whichever of ``head_to_head``, ``float_baseline``, ``quality``, ``store``,
``larger_than_ram`` and ``pipeline`` ``.json`` exist in the results folder; a section whose file
is missing (or unreadable) says so and how to produce it. Writes ``benchmarks.md`` and
``img/*.png`` (matplotlib, Agg backend) under ``--out``. Nothing is measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import report_quality
import report_speed
import report_store
from report_common import COMMANDS, Figures, ratio

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
OUT_DIR = ROOT / "docs"
COMMAND = "python benchmarks/report.py"

#: (title, results file stem or None for computed sections, section builder), in page order.
SECTIONS = [
    ("Speed-up over float32 search", "float_baseline", report_speed.float_section),
    ("Hamming top-k: engines head to head", "head_to_head", report_speed.hamming_section),
    ("Retrieval quality", "quality", report_quality.quality_section),
    ("Memory per million vectors", None, report_store.memory_section),
    ("CorpusStore: rescoring, search and appends", "store", report_store.store_section),
    ("A store larger than RAM", "larger_than_ram", report_store.larger_than_ram_section),
    (
        "Indexing pipeline: time outside the embedding model",
        "pipeline",
        report_store.pipeline_section,
    ),
]


def load_results(folder: Path) -> dict[str, dict]:
    """``{stem: content}`` of every readable ``<stem>.json`` the sections use."""
    results = {}
    for stem in COMMANDS:
        path = folder / f"{stem}.json"
        try:
            results[stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return results


def _case(results: dict, dim: int, threads: int, batch: int) -> dict | None:
    cases = results.get("float_baseline", {}).get("cases", [])
    return next(
        (c for c in cases if (c["dim"], c["threads"], c["batch"]) == (dim, threads, batch)), None
    )


def headline(results: dict) -> list[str]:
    """The few figures worth a README line, from whichever results exist."""
    rows = []
    if "float_baseline" in results:
        s = results["float_baseline"]["settings"]
        dim, threads = max(s["dims"]), max(s["threads"])
        for engine, label in (
            ("binary+int8 x4", "binary search + int8 rescoring x4"),
            ("binary", "binary search alone (Hamming order)"),
            ("int8", "exact int8 search (`int8_topk`)"),
        ):
            cells = []
            for batch in s["batches"]:
                case = _case(results, dim, threads, batch)
                if case:
                    speedups = case.get("speedup_over_best_float32", case["speedup_over_float32"])
                    cells.append(f"{ratio(speedups[engine])} (batch {batch})")
            rows.append(
                (f"{label} vs float32 `IndexFlatIP`, {s['rows']:,} x {dim}-d, {threads} threads",
                 ", ".join(cells))
            )  # fmt: skip
    if "head_to_head" in results:
        infos = [
            b["extra_info"]
            for b in results["head_to_head"]["benchmarks"]
            if b["extra_info"].get("kind") == "head-to-head"
            and (b["extra_info"]["nbits"], b["extra_info"]["threads"], b["extra_info"]["k"])
            == (1024, 2, 10)
        ]
        cells = [
            f"{ratio(i['median_seconds']['faiss-index'] / i['median_seconds']['numba'])} "
            f"(batch {i['batch']})"
            for i in sorted(infos, key=lambda i: i["batch"])
        ]
        if cells:
            rows.append(
                ("Hamming top-10 vs faiss `IndexBinaryFlat`, 1M x 1024 bits, 2 threads",
                 ", ".join(cells))
            )  # fmt: skip
    if "quality" in results:
        for model in results["quality"]["models"].values():
            values = model["ndcg"]["ndcg"]
            share = {n: 100 * v / values["float32 exact"] for n, v in values.items()}
            recall = model["recall"][0]
            rows.append(
                (
                    f"Quality, {model['name'].split('/')[-1]}: NDCG@10 retention (recall@10, "
                    f"{recall['corpus']} x {recall['queries']})",
                    f"binary {share['binary']:.1f}% ({recall['recall']['binary']:.2f}); "
                    f"+ int8 rescoring x4 {share['int8 rescore x4']:.1f}% "
                    f"({recall['multipliers']['4']['int8 rescore']:.2f}), "
                    f"x10 {share['int8 rescore x10']:.1f}% "
                    f"({recall['multipliers']['10']['int8 rescore']:.2f}); "
                    f"int8 exact {share['int8 exact']:.1f}% ({recall['recall']['int8 exact']:.2f})",
                )
            )
    shares = report_store.pipeline_shares(results.get("pipeline", {}))
    if shares:
        rows.append(("Indexing pipeline: time outside the embedding model", "; ".join(shares)))
    size = report_store.memory_bytes(1024)
    rows.append(
        (
            "Memory, 1M x 1024-d",
            f"float32 {size['float32'] / 1e9:.1f} GB, int8 {size['int8'] / 1e9:.1f} GB, "
            f"binary {size['binary'] / 1e6:.0f} MB",
        )
    )
    return ["| what | result |", "|---|---|", *(f"| {what} | {result} |" for what, result in rows)]


def _slug(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")


def build(results: dict, figures: Figures) -> str:
    """The whole Markdown page."""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{COMMAND}` from the results in `benchmarks/results/` (each section "
        "names the command that produced its file); every speed figure is a ratio of medians "
        "from engines timed in alternating rounds of one run, because this machine is shared "
        "and its memory speed drifts. No timing is asserted anywhere.",
        "",
        "## Headline",
        "",
        *headline(results),
        "",
        "Sections: " + ", ".join(f"[{title}](#{_slug(title)})" for title, _, _ in SECTIONS) + ".",
    ]
    for title, stem, section in SECTIONS:
        lines += ["", f"## {title}", ""]
        if stem is not None and stem not in results:
            lines.append(
                f"*No `benchmarks/results/{stem}.json` yet.* Produce it with `{COMMANDS[stem]}`, "
                f"then run `{COMMAND}` again."
            )
            continue
        try:
            lines += section(results.get(stem, {}), figures)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            lines.append(
                f"*Could not read `benchmarks/results/{stem}.json`*: {type(error).__name__} "
                f"{error}. Re-run `{COMMANDS.get(stem, COMMAND)}`."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="writes benchmarks.md, img/")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    results = load_results(args.results_dir)
    figures = Figures(args.out / "img", "img", [])
    text = build(results, figures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.md").write_text(text)
    print(f"wrote {args.out / 'benchmarks.md'} and {len(figures.saved)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
