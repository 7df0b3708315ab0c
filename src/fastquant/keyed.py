"""Re-indexing a changed input by a key column: which input rows to embed, which rows to delete.

A store indexed with ``key_column`` (``fastquant index --key-column COL``) remembers the column in
``records/index.json``. The key and the columns of each of its rows are read back from the row's
record (a text index keeps every input column, the embedded text is made from them), so nothing
else is stored and nothing can disagree with the rows. :func:`plan` compares them with the
input's, by a digest of each record:

- a key the store does not hold: its row is embedded and appended;
- a key whose record changed: its row is embedded and appended, the old row deleted (records are
  written once per id, so a change outside the embedded text, which ``where`` filters may read,
  takes a new row too);
- a key whose record is the same: nothing happens;
- a key the input no longer has: its row is deleted if ``delete_missing``.

Crash safety comes from the order of the writes: new rows are committed (records, then the
store's atomic append) before the rows they replace are deleted (one atomic delete). A run
killed in between leaves two live rows for a key; the next run keeps the newer one (the higher
id), deletes the older, and so converges on the input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .sources import InputError, concat_batches

#: Duplicate keys named in an error.
_SHOWN_DUPLICATES = 5


@dataclass(frozen=True)
class KeyedPlan:
    """What re-indexing by key does: ``embed (m,) int64`` input rows to embed and append,
    ``delete (d,) int64`` store ids to delete afterwards (both ascending), and the counts by
    reason (``missing``: keys gone from the input whose rows are deleted)."""

    embed: np.ndarray
    delete: np.ndarray
    added: int
    changed: int
    unchanged: int
    missing: int

    def describe(self, key_column: str) -> str:
        """One line for the log: ``by key 'id': 3 new rows, 1 changed, ...``."""
        return (
            f"by key {key_column!r}: {self.added:,} new rows, {self.changed:,} changed, "
            f"{self.unchanged:,} unchanged, {self.missing:,} gone from the input; "
            f"{self.delete.size:,} rows to delete"
        )


def plan(
    stored: pa.Table,
    live_ids: np.ndarray,
    inputs: Iterable[pa.RecordBatch],
    key_column: str,
    *,
    input_path: Path,
    delete_missing: bool,
) -> KeyedPlan:
    """Compare the store's records ``stored`` (record ``i`` is row ``i``; only ``live_ids
    (n,) int64`` count) with the input's record batches ``inputs`` (the same columns), keyed by
    ``key_column``.

    Raises :class:`~fastquant.sources.InputError` naming ``input_path`` for an input row without
    a key and for duplicate keys (naming some of them), before anything is written.
    """
    current, stale = _stored_keys(stored, live_ids, key_column)
    embed, replaced, seen, duplicates = [], [], set(), []
    unchanged = row = 0
    for batch in inputs:
        keys = batch.column(key_column).to_pylist()
        for key, digest in zip(keys, _digests(batch)):
            if key is None:
                raise InputError(
                    f"row {row:,} of {input_path} has no value in the key column {key_column!r}"
                )
            if key in seen:
                duplicates.append(key)
            seen.add(key)
            held = current.get(key)
            if held is None:
                embed.append(row)
            elif held[1] != digest:
                embed.append(row)
                replaced.append(held[0])
            else:
                unchanged += 1
            row += 1
    if duplicates:
        shown = ", ".join(repr(key) for key in list(dict.fromkeys(duplicates))[:_SHOWN_DUPLICATES])
        more = len(set(duplicates)) - _SHOWN_DUPLICATES
        raise InputError(
            f"{input_path} holds {len(set(duplicates)):,} keys of column {key_column!r} more than "
            f"once ({shown}{f' and {more:,} more' if more > 0 else ''}): a key must name one row"
        )
    missing = [held[0] for key, held in current.items() if key not in seen]
    delete = stale + replaced + (missing if delete_missing else [])
    return KeyedPlan(
        embed=np.asarray(embed, dtype=np.int64),
        delete=np.sort(np.asarray(delete, dtype=np.int64)),
        added=len(embed) - len(replaced),
        changed=len(replaced),
        unchanged=unchanged,
        missing=len(missing) if delete_missing else 0,
    )


def _stored_keys(
    stored: pa.Table, live_ids: np.ndarray, key_column: str
) -> tuple[dict[object, tuple[int, bytes]], list[int]]:
    """``{key: (id, record digest)}`` of the live rows (the highest id of a key), and the ids of
    older live rows of the same keys (left by a run killed between its append and its delete)."""
    current: dict[object, tuple[int, bytes]] = {}
    stale: list[int] = []
    if not live_ids.size:
        return current, stale
    batches = stored.take(pa.array(live_ids)).to_batches()
    for batch, ids in zip(batches, _split(live_ids, batches)):
        keys = batch.column(key_column).to_pylist()
        for i, key, digest in zip(ids.tolist(), keys, _digests(batch)):
            if key in current:
                stale.append(current[key][0])
            current[key] = (i, digest)
    return current, stale


def _split(ids: np.ndarray, batches: list[pa.RecordBatch]) -> Iterator[np.ndarray]:
    """``ids`` cut into the lengths of ``batches``."""
    start = 0
    for batch in batches:
        yield ids[start : start + batch.num_rows]
        start += batch.num_rows


def _digests(batch: pa.RecordBatch) -> list[bytes]:
    """A 16-byte BLAKE2b digest of each row of ``batch``: of the ``repr`` of its values."""
    columns = [column.to_pylist() for column in batch.columns]
    return [
        hashlib.blake2b(repr(values).encode("utf-8", "backslashreplace"), digest_size=16).digest()
        for values in zip(*columns)
    ]


def selected_batches(
    batches: Iterable[pa.RecordBatch], rows: np.ndarray, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """The input rows ``rows (m,) int64`` (ascending) of ``batches`` (the input from its row 0),
    regrouped into batches of ``batch_size`` rows (the last one shorter)."""
    if not rows.size:
        return
    held: list[pa.RecordBatch] = []
    count = start = 0
    for batch in batches:
        lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
        start += batch.num_rows
        if lo == hi:
            continue
        held.append(batch.take(pa.array(rows[lo:hi] - (start - batch.num_rows))))
        count += hi - lo
        while count >= batch_size:
            whole = concat_batches(held)
            yield whole.slice(0, batch_size)
            rest = whole.slice(batch_size)
            held, count = ([rest] if rest.num_rows else []), rest.num_rows
        if start > rows[-1]:
            break
    if count:
        yield concat_batches(held)
