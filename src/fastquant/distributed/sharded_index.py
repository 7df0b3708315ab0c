"""Index a text file into shards in parallel on a Dask cluster: one ``index_file`` task per shard.

The input's rows are split into ``len(store_paths)`` contiguous ranges, each a whole number of
``batch_size`` batches, so every shard embeds exactly the batches a single ``index_file`` run
would. One task first calibrates the int8 ranges and the centre of the bits on the input's first
``calibration_rows`` rows (embedded as ``index_file`` would); every shard is created with them,
so the shards can be searched together with :func:`fastquant.distributed.search`, ids in input order.

Each shard task reports its committed rows with ``Worker.log_event`` on a topic of its own; the
client subscribes to it and shows one progress bar for the whole input. A task whose worker dies
is rescheduled by Dask and ``index_file`` resumes after the shard's last committed row.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike, fspath

import numpy as np
from distributed import Client, get_worker

from ..embed import DEFAULT_BATCH_ROWS, DEFAULT_CALIBRATION_ROWS, IndexReport, index_file
from ..encoders import Encoder, load_encoder
from ..pipeline import (
    Progress,
    ProgressCallback,
    StageSeconds,
    TextVectors,
    calibration_sample,
    embedded_batches,
    first_batches,
)
from ..quantize import Calibration, centre_of
from ..sources import InputError, TextRecipe, TextSource
from ..store import DEFAULT_CHUNK_ROWS
from ..validation import non_negative_int, positive_int
from .sharded_search import DEFAULT_RETRIES, Placement, placements_for, shard_paths
from .shards import naming_shard

#: Encoders loaded by this worker process, by model spec.
_encoders: dict[str | None, Encoder] = {}
_encoders_lock = threading.Lock()


@dataclass(frozen=True)
class IndexPlan:
    """How an input is split: shard ``i`` gets rows ``[bounds[i], bounds[i + 1])``.

    ``ranges (2, dim) float32`` are the int8 ranges and ``centre (dim,) float32`` the centre of
    the bits every shard is created with.
    """

    rows: int
    bounds: tuple[int, ...]
    ranges: np.ndarray
    centre: np.ndarray


def index(
    client: Client,
    input_path: str | PathLike[str],
    store_paths: Sequence[str | PathLike[str]],
    *,
    text_column: str | None = None,
    template: str | None = None,
    model: str | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    calibration_rows: int = DEFAULT_CALIBRATION_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: Sequence[Placement] | None = None,
    progress: bool | ProgressCallback = True,
    retries: int = DEFAULT_RETRIES,
) -> list[IndexReport]:
    """Embed ``input_path`` (parquet, CSV or JSONL) into the shards ``store_paths``, in parallel.

    Args:
        client: a connected ``dask.distributed.Client``; ``input_path`` must be readable on every
            worker, and shard ``i``'s directory writable where its task runs (see ``workers``).
        input_path, text_column, template, batch_size, calibration_rows, chunk_rows: as
            :func:`fastquant.embed.index_file`.
        store_paths: one new (or partly indexed) store directory per shard, in row order.
        model: a :func:`~fastquant.encoders.load_encoder` spec (``None``: the default model);
            each worker loads it once.
        workers: per shard, the worker(s) allowed to index it (``workers=`` of ``Client.submit``).
        progress: a bar of the input's rows (True), nothing (False), or a callable
            ``progress(rows_done, rows_total)`` called on the client's event-loop thread.
        retries: automatic retries of a task that raised; an indexed shard resumes where it was.

    Returns:
        One :class:`~fastquant.embed.IndexReport` per shard. Re-running with the same arguments
        resumes unfinished shards.
    """
    paths = shard_paths(store_paths)
    placements = placements_for(workers, len(paths))
    retries = non_negative_int("retries", retries)
    if model is not None and not isinstance(model, str):
        raise TypeError(
            f"model must be a load_encoder spec (a str) or None, not {type(model).__name__}: "
            "each worker loads its own encoder"
        )
    positive_int("batch_size", batch_size)
    positive_int("calibration_rows", calibration_rows)
    source = fspath(input_path)
    recipe = {"text_column": text_column, "template": template}
    plan: IndexPlan = client.submit(
        plan_index,
        source,
        len(paths),
        recipe,
        model,
        batch_size,
        calibration_rows,
        pure=False,
        retries=retries,
    ).result()
    with _shard_progress(client, progress, plan) as (topic, shown):
        futures = [
            client.submit(
                index_shard,
                topic,
                i,
                source,
                paths[i],
                (plan.bounds[i], plan.bounds[i + 1]),
                plan.ranges,
                plan.centre,
                recipe,
                model,
                batch_size,
                chunk_rows,
                pure=False,
                retries=retries,
                workers=placements[i],
            )
            for i in range(len(paths))
        ]
        reports: list[IndexReport] = client.gather(futures)
        for i, shard_report in enumerate(reports):  # events may still be on their way
            shown.committed(shard_report.rows_total, part=i)
    return reports


@contextmanager
def _shard_progress(
    client: Client, progress: bool | ProgressCallback, plan: IndexPlan
) -> Iterator[tuple[str, Progress]]:
    """A new event topic for shard tasks to log ``(shard, rows_done, shard_rows)`` on, and the
    :class:`~fastquant.pipeline.Progress` of the whole input that the client shows them in."""
    topic = f"fastquant-index-{uuid.uuid4().hex}"
    with Progress(progress, plan.rows, parts=len(plan.bounds) - 1) as shown:
        client.subscribe_topic(topic, lambda event: shown.committed(event[1][1], part=event[1][0]))
        try:
            yield topic, shown
        finally:
            client.unsubscribe_topic(topic)


def plan_index(
    input_path: str,
    shards: int,
    recipe: dict[str, str | None],
    model: str | None,
    batch_size: int,
    calibration_rows: int,
) -> IndexPlan:
    """Split the input's rows into ``shards`` runs of whole batches and calibrate the int8 ranges.

    The ranges come from the first ``calibration_rows`` rows rounded up to whole batches of
    ``batch_size`` (:func:`~fastquant.pipeline.first_batches`): the rows ``index_file``
    calibrates a new store on.
    """
    source = TextSource(input_path)
    texts = TextRecipe(source.columns, **recipe)
    rows = source.count_rows()
    batch_count = -(-rows // batch_size)
    if batch_count < shards:
        raise InputError(
            f"{input_path} has {rows:,} rows, {batch_count} batches of {batch_size}: too few for "
            f"{shards} shards (each indexes whole batches); use fewer shards or a smaller batch_size"
        )
    bounds = tuple(min(rows, batch_size * (batch_count * i // shards)) for i in range(shards + 1))
    vector_source = TextVectors(texts, _encoder(model))
    batches = embedded_batches(source.batches(batch_size, 0, rows), vector_source, StageSeconds())
    sample = calibration_sample(first_batches(batches, calibration_rows))
    return IndexPlan(rows, bounds, Calibration.from_embeddings(sample).ranges, centre_of(sample))


def index_shard(
    topic: str,
    index: int,
    input_path: str,
    path: str,
    rows: tuple[int, int],
    ranges: np.ndarray,
    centre: np.ndarray,
    recipe: dict[str, str | None],
    model: str | None,
    batch_size: int,
    chunk_rows: int,
) -> IndexReport:
    """``index_file`` of rows ``[rows[0], rows[1])`` into shard ``index`` at ``path``.

    Each committed batch logs ``(index, rows_done, shard_rows)`` under ``topic``.
    """
    worker = get_worker()
    with naming_shard(index, path):
        return index_file(
            input_path,
            path,
            **recipe,
            model=_encoder(model),
            batch_size=batch_size,
            ranges=ranges,
            centre=centre,
            rows=rows,
            chunk_rows=chunk_rows,
            progress=lambda done, total: worker.log_event(topic, (index, done, total)),
        )


def _encoder(model: str | None) -> Encoder:
    """This worker's encoder for ``model``, loaded on first use."""
    with _encoders_lock:
        if model not in _encoders:
            _encoders[model] = load_encoder(model)
        return _encoders[model]
