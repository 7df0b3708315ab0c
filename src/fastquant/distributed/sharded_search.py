"""Search shards of one corpus on a Dask cluster: the answer of a single store holding all rows.

Shard ``i`` is a :class:`~fastquant.CorpusStore` directory; its row of id ``r`` has the global id
``r +`` the id spans (``next_id``) of shards ``0..i-1``. Deleted rows are never returned. A search takes two rounds of one task per shard:

1. scan: each shard's top ``K = k * rescore_multiplier`` by the store's own scan (asymmetric
   score or Hamming distance, global id). A single store's top ``K`` takes from each shard a
   prefix of that shard's own top ``K`` (in the same ``(key, id)`` order), so merging the lists
   gives it exactly, ties included (the scans that narrow, the default ``"asymmetric"`` and
   ``"hamming+asymmetric"``, merge their wide first-pass lists with the exact asymmetric scores
   of those rows, then narrow);
2. score: each shard owning some of those global candidates scores them against its int8 codes
   with the store's own kernel, and the client keeps the top ``k`` by ``(-score, id)``.

Scores equal a single store's only if every shard quantized with the same int8 ranges and the
same centre of its bits, so the shards' ranges and centres are compared and a search over mixed
ones is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike, fspath
from typing import Any

import numpy as np
from distributed import Client

from .. import _engine, validation
from ..quantize import Calibration
from .shards import ShardScan, calibration_digest, scan_shard, score_shard, verify_shard

#: Where shard ``i``'s tasks may run: a worker address or name, several, or None for any worker.
Placement = str | Sequence[str] | None

#: Automatic retries of a shard task that raised (e.g. a transient I/O error on a shared file
#: system). A task whose worker died is rescheduled by the scheduler itself, up to its
#: ``distributed.scheduler.allowed-failures`` times.
DEFAULT_RETRIES = 2


def search(
    client: Client,
    store_paths: Sequence[str | PathLike[str]],
    query_f32: Any,
    k: int = _engine.DEFAULT_K,
    *,
    scan: str = _engine.DEFAULT_SCAN,
    rescore_multiplier: int = _engine.DEFAULT_RESCORE_MULTIPLIER,
    threads: int | None = None,
    workers: Sequence[Placement] | None = None,
    retries: int = DEFAULT_RETRIES,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest rows of each query over the shards ``store_paths``, exactly as one store of them all.

    Args:
        client: a connected ``dask.distributed.Client``; shards are opened on its workers, so each
            path must be readable where the shard's tasks run.
        store_paths: the shards' store directories, in global id order.
        query_f32: ``(q, d)`` float queries (or one ``(d,)`` row), normalized like the corpus.
        k: results per query; at most the total rows are returned.
        scan: the first stage, as in :meth:`fastquant.CorpusStore.search` (run by fastquant's
            numba engine on every shard).
        rescore_multiplier: the scan keeps ``k * rescore_multiplier`` global candidates to rescore.
        threads: Numba threads per shard task on its worker; default all of the worker's cores.
            With several workers (or worker threads) per machine, give cores divided by them.
        workers: per shard, the worker(s) allowed to run its tasks (``workers=`` of
            ``Client.submit``): needed when shards live on worker-local disks.
        retries: automatic retries of a shard task that raised an exception.

    Returns:
        ``scores (q, k') float32`` descending and ``ids (q, k') int64`` global ids,
        ``k' = min(k, total rows)``; equal scores are ordered by ascending id.

    A shard that is missing or damaged raises the store's error with ``shard {i} ({path}):`` in
    front; shards of different dimensions or int8 ranges raise ValueError naming the one that
    differs.
    """
    paths = shard_paths(store_paths)
    queries = validation.as_float32_rows("query_f32", query_f32)
    k = validation.positive_int("k", k)
    scan = validation.choice("scan", scan, _engine.SCANS)
    multiplier = validation.positive_int("rescore_multiplier", rescore_multiplier)
    if threads is not None:  # None: each worker uses all of its own cores
        threads = validation.positive_int("threads", threads)
    placements = placements_for(workers, len(paths))
    retries = validation.non_negative_int("retries", retries)

    def submit(function, i: int, *args):
        return client.submit(
            function,
            i,
            paths[i],
            queries,
            *args,
            pure=False,
            retries=retries,
            workers=placements[i],
        )

    scans: list[ShardScan] = client.gather(
        [submit(scan_shard, i, k * multiplier, scan, threads) for i in range(len(paths))]
    )
    calibration = _check_shards(paths, scans, queries)
    offsets = np.cumsum([0] + [scan.rows for scan in scans], dtype=np.int64)
    if all(scan.found is None for scan in scans):
        return _engine.no_results(queries.shape[0])
    wide = _engine.first_pass_width(scan, k * multiplier)
    _, candidates = _engine.finish(_merged(scans, offsets, wide), k * multiplier)

    digest = calibration_digest(calibration)
    flat = candidates.reshape(-1)
    owners = np.searchsorted(offsets, flat, side="right") - 1
    jobs = []
    for i in range(len(paths)):
        slots = np.flatnonzero(owners == i)
        if slots.size:
            rows = flat[slots] - offsets[i]
            future = submit(score_shard, i, rows, slots, candidates.shape[1], digest, threads)
            jobs.append((slots, future))
    scores = np.empty(flat.shape, dtype=np.float32)
    for (slots, _), shard_scores in zip(jobs, client.gather([future for _, future in jobs])):
        scores[slots] = shard_scores
    return _engine.top_by_score(
        scores.reshape(candidates.shape), candidates, min(k, candidates.shape[1])
    )


def _merged(scans: list[ShardScan], offsets: np.ndarray, wide: int) -> _engine.FirstPass:
    """The first pass of the union of the shards: the top ``wide`` of their lists merged by
    ``(key, global id)``, as one store's scan keeps it."""
    filled = [i for i, scan in enumerate(scans) if scan.found is not None]
    keys = [scans[i].found.keys for i in filled]
    ids = [scans[i].found.ids + offsets[i] for i in filled]
    width = min(wide, sum(part.shape[1] for part in keys))
    merged_keys, merged_ids = _engine.merge_sorted(keys, ids, width, np.float32(np.inf))
    narrow = None
    if scans[filled[0]].found.narrow is not None:  # carry each id's score through the merge
        all_ids = np.concatenate(ids, axis=1)
        all_narrow = np.concatenate([scans[i].found.narrow for i in filled], axis=1)
        order = np.argsort(all_ids, axis=1)
        sorted_ids = np.take_along_axis(all_ids, order, axis=1)
        at = np.stack([np.searchsorted(row, wanted) for row, wanted in zip(sorted_ids, merged_ids)])
        narrow = np.take_along_axis(all_narrow, np.take_along_axis(order, at, axis=1), axis=1)
    return _engine.FirstPass(merged_keys, merged_ids, narrow)


def verify(
    client: Client,
    store_paths: Sequence[str | PathLike[str]],
    *,
    workers: Sequence[Placement] | None = None,
) -> list[int]:
    """``CorpusStore.verify`` of every shard in parallel on the workers: bytes checked per shard.

    Raises the first broken shard's :class:`~fastquant.store.StoreCorruptedError` (or other store
    error), with ``shard {i} ({path}):`` in front of the file it names.
    """
    paths = shard_paths(store_paths)
    placements = placements_for(workers, len(paths))
    return client.gather(
        [
            client.submit(verify_shard, i, path, pure=False, workers=placements[i])
            for i, path in enumerate(paths)
        ]
    )


def shard_paths(store_paths: Sequence[str | PathLike[str]]) -> list[str]:
    """The shards' directories as strings; a single path or an empty list is refused."""
    if isinstance(store_paths, (str, bytes, PathLike)):
        raise TypeError("store_paths must be a sequence of store directories, not a single path")
    paths = [fspath(path) for path in store_paths]
    if not paths:
        raise ValueError("store_paths is empty: give at least one shard")
    return paths


def placements_for(workers: Sequence[Placement] | None, shards: int) -> list[Placement]:
    """Per shard, the workers its tasks may run on (None: any)."""
    if workers is None:
        return [None] * shards
    placements = list(workers)
    if len(placements) != shards:
        raise ValueError(f"workers has {len(placements)} entries for {shards} shards")
    return placements


def _check_shards(
    paths: list[str], scans: list[ShardScan], queries: np.ndarray
) -> Calibration | None:
    """Check the shards agree with each other and the queries; returns their shared ranges."""
    dim = scans[0].dim
    for i, scan in enumerate(scans):
        if scan.dim != dim:
            raise ValueError(
                f"shard {i} ({paths[i]}) holds {scan.dim}-d rows but shard 0 ({paths[0]}) "
                f"{dim}-d rows: every shard must have the same dimension"
            )
    validation.require_dim("query_f32", queries, dim)
    filled = [i for i, scan in enumerate(scans) if scan.rows]
    if not filled:
        return None
    first = filled[0]
    for i in filled[1:]:
        for what, mine, theirs in (
            ("int8 ranges", scans[i].ranges, scans[first].ranges),
            ("centre of its bits", scans[i].centre, scans[first].centre),
        ):
            if not _same(mine, theirs):
                raise ValueError(
                    f"shard {i} ({paths[i]}) has {what} different from shard {first} "
                    f"({paths[first]}): its scores would not compare, so shards must share one "
                    "calibration (create each with CorpusStore.create(..., ranges=..., "
                    "centre=...), as fastquant.distributed.index does)"
                )
    calibration = Calibration(scans[first].ranges)
    validation.as_queries(
        queries, dim, bound=validation.row_bound(dim, calibration, scans[first].centre)
    )
    return calibration


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
