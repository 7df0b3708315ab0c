"""Synthetic corpora for the store benchmarks: unit gaussian float32 rows, made block by block.

Row ``r`` of a corpus is row ``r % BLOCK_ROWS`` of block ``r // BLOCK_ROWS``, and block ``b`` is
drawn from ``default_rng([seed, b])``. So any row can be regenerated without the rest (queries
are noisy copies of stored rows) and a corpus of any size is produced in bounded memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fastquant import CorpusStore

#: Rows drawn per generator call: 10,000 x 1024 float32 is 41 MB.
BLOCK_ROWS = 10_000

#: Blocks the queries' source rows are drawn from.
QUERY_BLOCKS = 8


def _block(seed: int, index: int, dim: int) -> np.ndarray:
    """Block ``index``: ``(BLOCK_ROWS, dim) float32`` unit rows."""
    rows = np.random.default_rng([seed, index]).standard_normal((BLOCK_ROWS, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def corpus_slice(seed: int, start: int, stop: int, dim: int) -> np.ndarray:
    """Rows ``[start, stop)`` of the corpus ``(seed, dim)``: ``(stop - start, dim) float32``."""
    first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
    blocks = [_block(seed, b, dim) for b in range(first, last + 1)]
    joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    lo = start - first * BLOCK_ROWS
    return joined[lo : lo + stop - start]


def batches(seed: int, rows: int, dim: int, batch_rows: int) -> Iterator[np.ndarray]:
    """The first ``rows`` rows in ``(batch_rows, dim) float32`` pieces (the last may be shorter)."""
    for lo in range(0, rows, batch_rows):
        yield corpus_slice(seed, lo, min(lo + batch_rows, rows), dim)


def noisy_queries(
    seed: int, rows: int, dim: int, count: int, *, query_seed: int = 7, noise: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` unit queries near stored rows: ``(count, dim) float32`` and their sources' ids.

    Query ``i`` is row ``sources[i]`` plus gaussian noise of norm about ``noise``, renormalized
    (cosine ~0.9 to its source, so the source is almost always the true nearest row).
    """
    rng = np.random.default_rng(query_seed)
    # Sources come from a few blocks only, so making the queries regenerates little of the corpus.
    n_blocks = -(-rows // BLOCK_ROWS)
    blocks = np.sort(rng.choice(n_blocks, size=min(n_blocks, QUERY_BLOCKS), replace=False))
    pool = np.concatenate(
        [np.arange(b * BLOCK_ROWS, min((b + 1) * BLOCK_ROWS, rows)) for b in blocks]
    )
    sources = np.sort(rng.choice(pool, size=count, replace=False)).astype(np.int64)
    queries = np.concatenate(
        [
            _block(seed, int(b), dim)[sources[sources // BLOCK_ROWS == b] - b * BLOCK_ROWS]
            for b in blocks
        ]
    )
    queries += rng.standard_normal(queries.shape, dtype=np.float32) * np.float32(
        noise / np.sqrt(dim)
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    order = rng.permutation(count)  # not in file order, like real traffic
    return np.ascontiguousarray(queries[order]), sources[order]


def build_store(
    path: str | Path,
    rows: int,
    dim: int,
    *,
    seed: int,
    batch_rows: int = 100_000,
    bits: str = "centred",
) -> CorpusStore:
    """Create a store at ``path`` holding the first ``rows`` rows of corpus ``(seed, dim)``.

    Default ``chunk_rows``; the int8 ranges (and the centre of centred ``bits``) come from the
    first batch, as for a real first append.
    """
    store = CorpusStore.create(path, dim, bits=bits)
    for batch in batches(seed, rows, dim, batch_rows):
        store.append(batch)
    store.close()
    return store


def cached_store(folder: str | Path, rows: int, dim: int, *, seed: int) -> Path:
    """The path of a centred store of the first ``rows`` rows of corpus ``(seed, dim)`` under
    ``folder``, built by :func:`build_store` unless a complete one is already there.

    A store counts as complete when it opens with ``rows`` live rows and no deletes; callers
    that change a store work on a copy.
    """
    path = Path(folder) / f"gaussian-{rows}x{dim}-seed{seed}.fq"
    try:
        with CorpusStore.open(path) as store:
            if len(store) == rows and store.next_id == rows and store.manifest.centred:
                return path
    except (OSError, ValueError):
        pass
    shutil.rmtree(path, ignore_errors=True)
    print(f"building {path}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_store(path, rows, dim, seed=seed)
    return path
