"""What a Dask worker does for one shard: open its store once, scan its bits, score candidates.

These functions run on workers and take the shard's path, never its data: each worker process
memory-maps a store the first time it is asked for it and keeps it open (refreshed when the
manifest is replaced by an append). Only queries and small result arrays cross the network.

A store error is re-raised with the shard's index and path in front of its message, keeping its
type (:class:`~fastquant.store.StoreNotFoundError`, :class:`~fastquant.store.StoreCorruptedError`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import _engine, validation
from ..quantize import Calibration
from ..store import CorpusStore, Snapshot, StoreError
from ..store.manifest import MANIFEST_NAME

#: Open stores of this worker process: path -> (store, signature of the manifest it read).
_open_stores: dict[str, tuple[CorpusStore, tuple[int, int, int]]] = {}
_open_lock = threading.Lock()


@dataclass(frozen=True)
class ShardScan:
    """One shard's answer to a scan: what it holds and, if the query fits, its top list.

    ``ranges (2, dim) float32`` are its int8 ranges (None before its first row), ``centre (dim,)
    float32`` the centre of its bits (None for sign bits); ``found`` its
    :class:`~fastquant._engine.FirstPass` with the shard's own row ids, None when no row is
    searchable (none, or all deleted) or when the queries' dimension is not ``dim``. ``rows`` is
    the shard's id span (its ``next_id``): its ids lie in ``[0, rows)``.
    """

    dim: int
    rows: int
    ranges: np.ndarray | None
    centre: np.ndarray | None
    found: _engine.FirstPass | None


def calibration_digest(calibration: Calibration | None) -> str | None:
    """A digest of the int8 ranges, equal for two shards exactly when their ranges are equal."""
    if calibration is None:
        return None
    return hashlib.blake2b(calibration.ranges.tobytes(), digest_size=16).hexdigest()


@contextmanager
def naming_shard(index: int, path: str) -> Iterator[None]:
    """Re-raise store and file-system errors with ``shard {index} ({path}):`` before the message."""
    try:
        yield
    except (StoreError, OSError) as error:
        raise type(error)(f"shard {index} ({path}): {error}") from error


def open_shard(path: str) -> CorpusStore:
    """This worker's open store at ``path``, refreshed if its manifest was replaced since."""
    try:
        status = os.stat(Path(path) / MANIFEST_NAME)
    except OSError:
        with _open_lock:
            _open_stores.pop(path, None)
        return CorpusStore.open(path)  # raises the store's own error, naming what is missing
    signature = (status.st_ino, status.st_mtime_ns, status.st_size)
    with _open_lock:
        cached = _open_stores.pop(path, None)
        if cached is None:
            store = CorpusStore.open(path)
        else:
            store = cached[0]
            if cached[1] != signature:
                store.refresh()
        _open_stores[path] = (store, signature)
        return store


def _snapshot(index: int, path: str) -> Snapshot:
    """The committed state of shard ``index`` at ``path`` this call works on, start to end.

    Its chunk files are checked to be the ones mapped, at their committed sizes.
    """
    with naming_shard(index, path):
        snapshot = open_shard(path).snapshot
        snapshot.require_intact(Path(path))
        return snapshot


def scan_shard(
    index: int, path: str, queries: np.ndarray, k: int, scan: str, threads: int | None
) -> ShardScan:
    """First pass of ``scan`` for ``queries (q, d) float32`` over shard ``index``, as the store's
    own search runs it (see :class:`ShardScan`)."""
    snapshot = _snapshot(index, path)
    corpus = snapshot.corpus
    ranges = None if corpus.calibration is None else corpus.calibration.ranges
    found = None
    if queries.shape[1] == corpus.dim and corpus.searchable_rows:
        found = _engine.first_pass(
            corpus, queries, k, scan, "numba", validation.thread_count(threads)
        )
        found = replace(found, ids=corpus.to_ids(found.ids))
    return ShardScan(corpus.dim, snapshot.manifest.next_id, ranges, corpus.centre, found)


def score_shard(
    index: int,
    path: str,
    queries: np.ndarray,
    rows: np.ndarray,
    slots: np.ndarray,
    per_query: int,
    calibration: str,
    threads: int | None,
) -> np.ndarray:
    """Int8 scores of (query, row) pairs of shard ``index``: ``(s,) float32``.

    Pair ``j`` is the shard's row of id ``rows[j]`` and query ``slots[j] // per_query`` of ``queries (q, d)
    float32``; ``slots`` are positions in the ``(q, per_query)`` candidate matrix of the whole
    search. Scored by the engine code ``CorpusStore.search`` runs, so a row gets the score the
    store would give it. ``calibration`` is the digest of the ranges the scan reported.
    """
    corpus = _snapshot(index, path).corpus
    positions = corpus.to_positions(rows)
    if calibration_digest(corpus.calibration) != calibration or (positions < 0).any():
        raise RuntimeError(
            f"shard {index} ({path}) was replaced during the search: it no longer holds the rows "
            "or int8 ranges its scan reported"
        )
    candidates = np.full(queries.shape[0] * per_query, -1, dtype=np.int64)
    candidates[slots] = positions  # slots left at -1 belong to other shards and are skipped
    scores = _engine.score_int8(
        corpus, queries, candidates.reshape(-1, per_query), threads=validation.thread_count(threads)
    )
    return scores.reshape(-1)[slots]


def verify_shard(index: int, path: str) -> int:
    """``CorpusStore.verify`` of shard ``index``: bytes checked; errors name the shard."""
    with naming_shard(index, path):
        return open_shard(path).verify()
