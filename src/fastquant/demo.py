"""The bundled medicine demo: its store in a per-user cache folder, built on first use."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .data import medicine_parquet
from .embed import IndexReport, index_file
from .encoders import DEFAULT_MODEL, Encoder, encoder_name
from .pipeline import ProgressCallback
from .text_store import TextStore

#: How one medicine becomes one text to embed.
MEDICINE_TEMPLATE = (
    "Name: {Medicine Name}. Composition: {Composition}. Uses: {Uses}. Side effects: {Side_effects}"
)
DEMO_QUERIES = (
    "Treatment of Bacterial infections",
    "migraine headache",
    "high blood pressure",
)
#: The record fields ``fastquant demo`` shows for each answer, and how many answers.
DEMO_FIELDS = ("Medicine Name", "Composition", "Uses")
DEMO_K = 5
#: The title of the demo's search page.
DEMO_TITLE = "Medicine search"
_DEMO_VERSION = 1


def cache_root() -> Path:
    """``$FASTQUANT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastquant``, else ``~/.cache/fastquant``."""
    if os.environ.get("FASTQUANT_CACHE_DIR"):
        return Path(os.environ["FASTQUANT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fastquant"


def demo_store_path(model: str | None = None) -> Path:
    """Where the demo store of ``model`` (default all-MiniLM-L6-v2) lives."""
    name = encoder_name(model or DEFAULT_MODEL)
    slug = name if name in ("minilm", "wordllama") else Path(name).name
    return cache_root() / f"medicines-{slug}-v{_DEMO_VERSION}"


def demo_store_complete(path: Path) -> bool:
    """Whether the demo store at ``path`` exists and holds every medicine."""
    from .store import CorpusStore

    if TextStore.open(path).description is None:
        return False
    with CorpusStore.open(path) as store:
        return len(store) == medicine_rows()


def build_demo_store(
    model: str | Encoder | None = None,
    *,
    progress: bool | ProgressCallback = True,
    log: Callable[[str], None] | None = None,
) -> IndexReport:
    """Index (or finish indexing) the bundled medicines into :func:`demo_store_path`."""
    return index_file(
        medicine_parquet(),
        demo_store_path(model if model is None or isinstance(model, str) else model.name),
        template=MEDICINE_TEMPLATE,
        model=model,
        progress=progress,
        log=log,
    )


def medicine_rows() -> int:
    """How many medicines the bundled data set holds (11,825)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(medicine_parquet()).metadata.num_rows
