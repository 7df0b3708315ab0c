"""Plain-text tables and sizes for the command line."""

from __future__ import annotations

import shutil
from collections.abc import Sequence


def human_bytes(n: float) -> str:
    """``913.2 MB`` style, powers of 1000 like disk vendors and ``du --si``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, width: int | None = None
) -> str:
    """Columns padded to their widest cell; wide text columns are cut to fit ``width``.

    Numbers are right-aligned; cells are single lines (newlines become spaces).
    """
    width = width or shutil.get_terminal_size((120, 24)).columns
    cells = [[_one_line(value) for value in row] for row in rows]
    numeric = [
        all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(header))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(header)]
    budget = width - 2 * (len(header) - 1)
    floors = [min(w, max(len(h), 8)) for w, h in zip(widths, header)]
    while sum(widths) > budget:
        shrinkable = [i for i in range(len(widths)) if widths[i] > floors[i]]
        if not shrinkable:
            break
        widths[max(shrinkable, key=widths.__getitem__)] -= 1
    lines = []
    for row in [list(header), *cells]:
        parts = []
        for i, text in enumerate(row):
            text = text if len(text) <= widths[i] else text[: widths[i] - 1] + "…"
            parts.append(text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _one_line(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return " ".join(str("" if value is None else value).split())
