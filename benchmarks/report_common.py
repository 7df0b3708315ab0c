"""What every section of ``docs/benchmarks.md`` shares: commands, machine lines, figure saving."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: The command that reproduces each results file, by file stem.
COMMANDS = {
    "head_to_head": "python -m pytest benchmarks/test_bench_head_to_head.py --benchmark-enable "
    "--benchmark-json=benchmarks/results/head_to_head.json",
    "float_baseline": "python benchmarks/float_baseline.py",
    "quality": "python -m pytest benchmarks/test_bench_quality.py -q -s",
    "store": "python -m pytest benchmarks/test_bench_store.py --benchmark-enable "
    "--benchmark-json=benchmarks/results/store.json",
    "larger_than_ram": "python benchmarks/larger_than_ram.py --rows 2000000",
    "pipeline": "python -m pytest benchmarks/test_bench_pipeline.py",
}

#: Colours per engine, the same in every plot.
COLOURS = {
    "numba": "#1f77b4",
    "faiss-index": "#ff7f0e",
    "faiss": "#ffbb78",
    "usearch": "#2ca02c",
    "numpy": "#7f7f7f",
    "float32": "#7f7f7f",
    "faiss-sq8": "#ff7f0e",
    "usearch-i8": "#2ca02c",
    "int8": "#9467bd",
    "binary": "#1f77b4",
    "binary+int8 x4": "#17becf",
    "faiss-binary+numpy x4": "#d62728",
}


@dataclass
class Figures:
    """Saves PNGs into ``folder`` and returns their Markdown, linked as ``link/<name>``."""

    folder: Path
    link: str
    saved: list[Path]

    def save(self, figure, name: str, alt: str) -> str:
        import matplotlib.pyplot as plt

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        self.saved.append(path)
        return f"![{alt}]({self.link}/{name})"


Section = Callable[[dict, Figures], list[str]]


def machine_line(machine: dict, threads: str, shapes: str) -> str:
    """One sentence: machine, threads and shapes of a section."""
    cpu = machine.get("cpu", "unknown CPU")
    cores = machine.get("cores", "?")
    ram = f", {machine['ram_gib']} GiB RAM" if "ram_gib" in machine else ""
    return f"Machine: {cpu}, {cores} vCPUs{ram}. Threads: {threads}. Shapes: {shapes}."


def command_line(stem: str, data: dict | None = None) -> str:
    command = (data or {}).get("command") or COMMANDS[stem]
    return f"Reproduce: `{command}` (results in `benchmarks/results/{stem}.json`)."


def ratio(value: float) -> str:
    return f"{value:.1f}x" if value >= 1.95 else f"{value:.2f}x"
