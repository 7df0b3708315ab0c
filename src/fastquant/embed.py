"""Records in, store out: stream a file's records, embed them (or take their precomputed
embeddings), quantize them into a ``CorpusStore``.

``index_file`` runs the stages of :mod:`fastquant.pipeline`: it reads the input in batches (never
all of it), embeds each batch (or reads its vectors from a parquet column or a ``.npy`` file,
:mod:`fastquant.precomputed`), calibrates a new store on the first rows, and commits groups of
batches: their source records first (``records/``, see :mod:`fastquant.records`), then the
store's atomic append. Re-running it after an interruption continues from the last committed
row. The store's ``records/index.json`` (:mod:`fastquant.text_store`) remembers the model and the
text recipe (or where the vectors came from), so it can be searched later
(:class:`fastquant.texts.TextIndex`). With a key column, a re-run makes the store match a changed
input instead (:mod:`fastquant.keyed`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .encoders import Encoder, encoder_name, load_encoder
from .keyed import KeyedPlan, plan, selected_batches
from .pipeline import (
    DEFAULT_COMMIT_SECONDS,
    CommitPolicy,
    EmbeddedBatch,
    Progress,
    ProgressCallback,
    StageSeconds,
    TextVectors,
    VectorSource,
    calibration_sample,
    embedded_batches,
    first_batches,
)
from .precomputed import ColumnVectors, NpyVectors, RowNumbers
from .sources import InputError, TextRecipe, TextSource, concat_batches
from .store import DEFAULT_CHUNK_ROWS, CorpusStore, StoreNotFoundError
from .text_store import IndexDescription, TextStore
from .validation import positive_int

DEFAULT_BATCH_ROWS = 256
DEFAULT_CALIBRATION_ROWS = 2048


@dataclass(frozen=True)
class IndexReport:
    """What one ``index_file`` run did. Times are wall seconds of this run; ``model`` is None
    for precomputed embeddings (``seconds_embedding`` is then the time spent converting and
    checking them). ``rows_total`` counts live rows; a run by key column also reports the rows it
    deleted (changed or gone from the input) and those it left as they were."""

    store_path: Path
    model: str | None
    rows_added: int
    rows_total: int
    resumed_from: int
    calibration: str
    seconds: float
    seconds_reading: float
    seconds_embedding: float
    seconds_storing: float
    rows_deleted: int = 0
    rows_unchanged: int = 0

    @property
    def storing_share(self) -> float:
        """Time spent quantizing and storing, as a fraction of the time spent embedding."""
        return self.seconds_storing / self.seconds_embedding if self.seconds_embedding else 0.0


def index_file(
    input_path: str | os.PathLike[str] | None,
    store_path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    template: str | None = None,
    model: str | Encoder | None = None,
    embedding_column: str | None = None,
    embeddings: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    calibration_rows: int = DEFAULT_CALIBRATION_ROWS,
    ranges: Any | None = None,
    centre: Any | None = None,
    rows: tuple[int, int | None] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    commit_seconds: float = DEFAULT_COMMIT_SECONDS,
    key_column: str | None = None,
    delete_missing: bool = False,
    progress: bool | ProgressCallback = True,
    log: Callable[[str], None] | None = None,
) -> IndexReport:
    """Embed the records of ``input_path`` (parquet, CSV or JSONL) into the store at ``store_path``.

    The text of a record is its ``text_column`` or the ``template`` filled from its columns (e.g.
    ``"Name: {Medicine Name}. Uses: {Uses}"``). ``model`` is an :class:`~fastquant.encoders.Encoder`
    or a :func:`~fastquant.encoders.load_encoder` spec (default all-MiniLM-L6-v2). Precomputed
    embeddings take the model's place: ``embedding_column``, a parquet column of float lists (the
    records keep the other columns), or ``embeddings``, a 2-D float ``.npy`` file whose row ``i``
    belongs to input row ``i`` (``input_path`` None: the records are ``{"row": i}``). The int8 ranges
    are ``ranges (2, dim)`` if given, else calibrated on the first ``calibration_rows`` rows, which
    also give the centre of the store's bits (with ``ranges``: ``centre (dim,)`` if given, else
    the ranges' midpoint; see :meth:`fastquant.CorpusStore.create`).
    ``rows=(start, stop)`` indexes only that row range of the input (a shard). Embedded batches are
    committed together every ``commit_seconds`` (0: every batch). ``progress`` is a progress bar
    (True), nothing (False) or a callback after each commit; ``log`` receives one-line notices.

    If the store exists, indexing resumes after its last committed row; the model, text recipe (or
    the source of the vectors) and input columns must match the ones it was built with. A bad
    vector (wrong dimension, NaN/Inf, missing) raises :class:`~fastquant.sources.InputError`
    naming its row, before anything of its batch is committed.

    ``key_column`` (text only; remembered by the store, so later runs may leave it out) makes a
    run on an existing store match the store to the input instead of resuming: rows of new keys
    are embedded and appended, changed rows (any column) are embedded again and their old rows
    deleted, unchanged rows are left alone, and with ``delete_missing`` the rows of keys the input
    no longer has are deleted (:mod:`fastquant.keyed`). Duplicate or missing keys raise
    :class:`~fastquant.sources.InputError` before anything is written.
    """
    started = time.perf_counter()
    positive_int("batch_size", batch_size)
    positive_int("calibration_rows", calibration_rows)
    what = {"text_column": text_column, "template": template}
    what |= {"embedding_column": embedding_column, "embeddings": embeddings}
    given = [name for name, value in what.items() if value is not None]
    if len(given) != 1:
        raise ValueError(f"give one of {', '.join(what)} (got {', '.join(given) or 'none'})")
    if model is not None and (embedding_column is not None or embeddings is not None):
        raise ValueError("model embeds text; precomputed embeddings need none")
    text = text_column is not None or template is not None
    if key_column is not None and (not text or rows is not None):
        raise ValueError(
            "key_column re-indexes text (text_column or template) of a whole input, not "
            + ("precomputed embeddings" if not text else "a row range")
        )
    say = log or (lambda message: None)
    npy = None if embeddings is None else NpyVectors(embeddings)
    if input_path is None and npy is None:
        raise ValueError("input_path is needed, except with embeddings (a .npy file)")
    source = RowNumbers(npy) if input_path is None else TextSource(input_path)
    if npy is not None and input_path is not None and npy.rows != source.count_rows():
        raise InputError(
            f"{npy.path} has {npy.rows:,} rows but {source.path} has {source.count_rows():,}: "
            "row i of the embeddings belongs to row i of the input"
        )
    first_row, total = _rows_to_index(source, rows)
    seconds = StageSeconds()
    with _Target(Path(store_path), chunk_rows) as target:
        if npy is not None:
            vector_source: VectorSource = npy
        elif embedding_column is not None:
            vector_source = ColumnVectors(source, embedding_column)
        else:
            recipe = TextRecipe(source.columns, text_column=text_column, template=template)
            vector_source = TextVectors(recipe, _encoder(model, target))
            key_column = target.key_column(key_column, source.columns)
        if delete_missing and key_column is None:
            raise ValueError("delete_missing needs a key column (key_column) to know rows by")
        no_rows = pa.RecordBatch.from_pylist([], schema=source.schema)
        description = IndexDescription(
            model=vector_source.model,
            dim=vector_source.dim,
            columns=tuple(vector_source.records(no_rows).schema.names),
            source=str(source.path.resolve()),
            start_row=first_row,
            key_column=key_column,
            **{"text": None, "vectors": None, **vector_source.describe()},
        )
        target.resume(description)
        start = len(target)
        if key_column is None:
            keyed, done, to_do, counted_from = None, start, total, 0
            if done:
                _require_same_input(target, source, vector_source, first_row, done, total)
                say(f"resuming: {done:,} of {total:,} rows are already in {target.path}")
            record_batches = source.batches(batch_size, first_row + done, first_row + total)
        else:
            keyed = target.plan(source, key_column, batch_size, delete_missing)
            done, to_do, counted_from = 0, keyed.embed.size, start
            say(keyed.describe(key_column))
            record_batches = selected_batches(
                source.batches(batch_size, 0, total), keyed.embed, batch_size
            )
        policy = CommitPolicy(commit_seconds)
        with Progress(progress, to_do, done=done) as shown:
            embedded = embedded_batches(record_batches, vector_source, seconds, first_row + done)
            batches = shown.track(embedded)
            first: list[EmbeddedBatch] = []
            if target.store is None:
                first = first_batches(batches, calibration_rows)
                say(target.create(description, ranges, centre, first))
            for group in policy.groups(first, batches):
                committing = time.perf_counter()
                target.commit(group)
                seconds.storing += time.perf_counter() - committing
                shown.committed(len(target) - counted_from)
        deleted = 0
        if keyed is not None and keyed.delete.size:
            deleted = target.store.delete(keyed.delete)
        return IndexReport(
            store_path=target.path,
            model=vector_source.model,
            rows_added=len(target) - start,
            rows_total=target.live_rows,
            resumed_from=done,
            calibration=target.store.calibration_source or "",
            seconds=time.perf_counter() - started,
            seconds_reading=seconds.reading,
            seconds_embedding=seconds.embedding,
            seconds_storing=seconds.storing,
            rows_deleted=deleted,
            rows_unchanged=0 if keyed is None else keyed.unchanged,
        )


def _rows_to_index(
    source: TextSource | RowNumbers, rows: tuple[int, int | None] | None
) -> tuple[int, int]:
    """The first input row to index and how many rows from it (``rows``: ``(start, stop)``)."""
    start, stop = (0, None) if rows is None else rows
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"rows must be (start, stop) with 0 <= start <= stop, got {rows}")
    available = source.count_rows()
    total = (available if stop is None else min(stop, available)) - start
    if total <= 0:
        raise InputError(f"no rows to index in {source.path}")
    return int(start), total


class _Target:
    """The store being indexed into, with its records; closes the store on exit.

    ``store`` is None until :meth:`create` makes it (a new store is created once its calibration
    rows are embedded, so a failed start leaves no directory behind).
    """

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path, self.chunk_rows = path, chunk_rows
        self.store = _existing_store(path)
        self.text = TextStore.open(path)

    def __enter__(self) -> _Target:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.store is not None:
            self.store.close()

    def __len__(self) -> int:
        """Rows committed, deleted ones too (the store's next id, the records' count)."""
        return 0 if self.store is None else self.store.next_id

    @property
    def live_rows(self) -> int:
        return 0 if self.store is None else len(self.store)

    def key_column(self, wanted: str | None, columns: list[str]) -> str | None:
        """The key column of this run: ``wanted``, else the one the store remembers; it must be
        a column of the input and, once the store has one, stay the same."""
        described = self.text.description
        remembered = None if described is None else described.key_column
        if wanted is not None and remembered not in (None, wanted):
            raise InputError(
                f"{self.path} is kept up to date by key column {remembered!r}, not {wanted!r}; "
                "use the same key or a new directory"
            )
        key = wanted or remembered
        if key is not None and key not in columns:
            raise InputError(
                f"the key column {key!r} is not a column of the input; it has: "
                f"{', '.join(map(repr, columns))}"
            )
        return key

    def resume(self, description: IndexDescription) -> None:
        """Refuse to extend an existing store with rows made otherwise, then prepare to write."""
        if self.store is None:
            return
        # Before the writer lock, whose taking cuts the store's own leftovers: records that do not
        # end where the store does (or at most one commit later) prove that the store lost rows.
        self.text.records.uncommitted(len(self))
        self.require_described()
        if self.text.description is not None:
            self.text.description.require_same(
                self.path,
                text=description.text,
                vectors=description.vectors,
                columns=description.columns,
                start_row=description.start_row,
            )
        if self.store.dim != description.dim:
            raise InputError(
                f"{self.path} holds {self.store.dim}-d embeddings but "
                f"{description.made_from} makes {description.dim}-d ones"
            )
        self._prepare(description)

    def require_described(self) -> None:
        """Refuse a store that holds rows ``index_file`` did not make (no description)."""
        if self.text.description is None and len(self):
            raise InputError(
                f"{self.path} holds rows that were not indexed from text or precomputed "
                f"embeddings by fastquant index (no {self.text.description_file}); index into a "
                "new directory"
            )

    def create(
        self,
        description: IndexDescription,
        ranges: Any | None,
        centre: Any | None,
        first: list[EmbeddedBatch],
    ) -> str:
        """Create the store with ``ranges`` (and ``centre``) or calibrated on ``first``;
        returns a notice."""
        if ranges is not None:
            notice, calibration_source, sample = "int8 ranges: given", None, None
        else:
            sample = calibration_sample(first)
            notice = f"int8 ranges: calibrated on the first {len(sample):,} rows"
            calibration_source = f"the first {len(sample):,} rows indexed"
        self.store = CorpusStore.create(
            self.path,
            description.dim,
            calibration_embeddings=sample,
            ranges=ranges,
            centre=centre,
            chunk_rows=self.chunk_rows,
            calibration_source=calibration_source,
        )
        self._prepare(description)
        return notice

    def _prepare(self, description: IndexDescription) -> None:
        """Lock the store, drop records the store never committed, record how it is built (a
        run by key column records its key and input before it writes a row)."""
        self.store.acquire_writer()
        self.text.records.truncate(len(self))
        self.text.records.require_rows(len(self))
        current = self.text.description
        if current is None:
            self.text.describe(description)
        elif description.key_column is not None and (current.key_column, current.source) != (
            description.key_column,
            description.source,
        ):
            keyed = replace(current, key_column=description.key_column, source=description.source)
            self.text.describe(keyed)
        else:
            self.text.upgrade()

    def plan(
        self,
        source: TextSource,
        key_column: str,
        batch_size: int,
        delete_missing: bool,
    ) -> KeyedPlan:
        """What matching the store to ``source`` by ``key_column`` takes (:func:`fastquant.keyed.plan`)."""
        if self.store is None:
            stored, live = pa.table({}), np.empty(0, dtype=np.int64)
        else:
            stored, live = self.text.records.table(), self.store.live_ids()
        return plan(
            stored,
            live,
            source.batches(batch_size, 0, None),
            key_column,
            input_path=source.path,
            delete_missing=delete_missing,
        )

    def commit(self, group: list[EmbeddedBatch]) -> None:
        """Store embedded batches as one commit: their records first, then their rows."""
        self.text.records.write(len(self), concat_batches([b.records for b in group]))
        self.store.append(np.concatenate([b.vectors for b in group]))


def _existing_store(path: Path) -> CorpusStore | None:
    """The store at ``path``, or None where one may be created (nothing, or an empty directory)."""
    try:
        return CorpusStore.open(path)
    except StoreNotFoundError:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise StoreNotFoundError(
                f"{path} exists and is not a fastquant store; choose a new directory"
            ) from None
        return None


def _encoder(model: str | Encoder | None, target: _Target) -> Encoder:
    """The encoder to index with: ``model``, else the one the store was indexed with, else the
    default; a store is only ever extended with its own model."""
    target.require_described()
    described = target.text.description
    if described is not None and described.model is None:
        raise InputError(
            f"{target.path} was indexed from {described.made_from}, not from text; index "
            "into a new directory"
        )
    if described is not None and model is not None:
        wanted = encoder_name(model) if isinstance(model, str) else model.name
        described.require_same(target.path, model=wanted)
    if model is not None and not isinstance(model, str):
        return model
    return load_encoder(described.model if described is not None else model)


def _require_same_input(
    target: _Target,
    source: TextSource | RowNumbers,
    vector_source: VectorSource,
    first_row: int,
    done: int,
    total: int,
) -> None:
    """Refuse to resume from an input that is not the one the store's rows came from."""
    if done > total:
        raise InputError(
            f"{target.path} holds {done:,} rows but {source.path} has only {total:,} to "
            "index: it is not the input the store was built from"
        )
    last = first_row + done - 1
    (last_input,) = vector_source.records(next(source.batches(1, last, last + 1))).to_pylist()
    (last_stored,) = target.text.records.get([done - 1])
    if last_input != last_stored:
        raise InputError(
            f"row {last:,} of {source.path} differs from the record stored for it in "
            f"{target.path}: the input changed since it was indexed; index it into a new directory"
        )
