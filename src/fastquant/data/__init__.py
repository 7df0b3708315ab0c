"""Data shipped with fastquant: the medicine data set of the demo and the quality benchmarks."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

MEDICINE_COLUMNS = ("Medicine Name", "Composition", "Uses", "Side_effects")


def medicine_parquet() -> Path:
    """Path of the bundled ``medicine_details.parquet`` (11,825 rows, columns ``MEDICINE_COLUMNS``)."""
    return Path(str(files(__package__) / "medicine_details.parquet"))
