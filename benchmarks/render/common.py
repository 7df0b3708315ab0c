"""What every section shares: the header from a result's common keys, tables, numbers, images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def value(x: object) -> str:
    """A shape as text: ``1,000,000`` (but ``1024``); lists ``1, 16, 256``; dicts ``a 1, b 2``."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    if isinstance(x, float):
        return f"{x:,.4g}"
    if isinstance(x, list | tuple):
        return ", ".join(map(value, x))
    if isinstance(x, dict):
        return ", ".join(f"{key} {value(v)}" for key, v in x.items())
    return str(x)


def header(name: str, result: dict) -> list[str]:
    """Machine, threads, shapes, load and the command that reproduces ``results/<name>.json``."""
    machine = result["machine"]
    ram = f", {machine['ram_gib']} GiB RAM" if machine.get("ram_gib") else ""
    shapes = "; ".join(f"{key}: {value(v)}" for key, v in result["shapes"].items())
    text = (
        f"Machine: {machine['cpu']}, {machine['cores']} vCPUs{ram}. "
        f"Threads: {value(result['threads'])}. Shapes: {shapes}."
    )
    if result.get("load_average"):
        before, after = result["load_average"]
        text += (
            f" 1-minute load average {before:.1f} before and {after:.1f} after the run "
            "(other work on this shared machine)."
        )
    if result.get("quick"):
        quick = "**A `--quick` run: tiny shapes, a smoke test, not a measurement.**"
        return [quick, text, f"Reproduce: `{result['command']}`."]
    where = f"results in `benchmarks/results/{name}.json`"
    return [text, f"Reproduce: `{result['command']}` ({where})."]


def table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def details(summary: str, lines: list[str]) -> list[str]:
    """``lines`` folded under ``summary`` (GitHub shows them on a click)."""
    return [f"<details><summary>{summary}</summary>", "", *lines, "", "</details>"]


def ratio(x: float) -> str:
    return f"{x:.1f}x" if x >= 1.95 else f"{x:.2f}x"


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Images:
    """Saves figures as PNG files in ``folder``; the Markdown links them as ``link/<name>``."""

    folder: Path
    link: str = "img"
    saved: list[Path] = field(default_factory=list)

    def save(self, figure, name: str, alt: str) -> str:
        """Write ``figure`` to ``folder/name``, close it; its Markdown image."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        figure.savefig(path, dpi=110, bbox_inches="tight")
        pyplot().close(figure)
        self.saved.append(path)
        return f"![{alt}]({self.link}/{name})"


def grouped_bars(axis, groups: list, series: dict[str, list[float]], style: dict) -> None:
    """Bars of ``series`` (name -> one value per group, NaN for none) grouped by ``groups``, log y.

    ``style`` maps a series name to ``(label, colour)``.
    """
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        x = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
        label, colour = style.get(name, (name, None))
        axis.bar(x, values, width, label=label, color=colour)
    axis.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
    axis.set_yscale("log")
    axis.grid(axis="y", which="both", alpha=0.3)


def legend_below(figure, axis, columns: int) -> None:
    """One legend for the whole figure, below it, from ``axis``'s artists."""
    handles, labels = axis.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=8)
