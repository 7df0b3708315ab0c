"""Sharded search and parallel ingestion on a Dask cluster (``pip install 'fastquant[dask]'``).

- :func:`search`: one query batch over many :class:`~fastquant.CorpusStore` shards, opened and
  memory-mapped on the workers; returns exactly what a single store of all their rows returns.
- :func:`verify`: every shard's checksums, checked in parallel on the workers.
- :func:`index`: a text file embedded into shards in parallel, one task per shard, with one
  shared int8 calibration and a progress bar on the client.

See ``docs/distributed.md``.
"""

from typing import Any

try:
    import distributed as _distributed  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastquant.distributed needs Dask's distributed scheduler: pip install 'fastquant[dask]'"
    ) from error

from .sharded_search import search, verify

__all__ = ["index", "search", "verify"]


def __getattr__(name: str) -> Any:
    # The text pipeline (and its readers and models) loads only when indexing is asked for.
    if name == "index":
        from .sharded_index import index

        return index
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
