"""Text in, store out: stream a file's records, embed them, quantize them into a ``CorpusStore``.

``index_file`` reads the input in batches (never all of it), embeds each batch, writes the
batch's source records (``records/``, see :mod:`fastquant.records`) and then appends its
embeddings to the store, which commits atomically. Re-running it after an interruption continues
from the last committed row. The store remembers the model and the text recipe in
``records/index.json``, so it can be searched by text later (:class:`fastquant.texts.TextIndex`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .encoders import Encoder, encoder_name, load_encoder
from .records import RECORDS_DIR, RecordLog
from .sources import InputError, TextRecipe, TextSource, concat_batches
from .store import DEFAULT_CHUNK_ROWS, CorpusStore, StoreCorruptedError, StoreNotFoundError
from .store.manifest import MANIFEST_NAME, write_file_atomically
from .validation import positive_int

INDEX_META = "index.json"
DEFAULT_BATCH_ROWS = 256
DEFAULT_CALIBRATION_ROWS = 2048
#: Embedded rows are committed at least this often (seconds), so an interruption loses little work
#: while a fast model does not pay a commit (several fsyncs) per batch.
DEFAULT_COMMIT_SECONDS = 2.0
#: ... and at least every this many rows, which bounds the memory held between commits.
COMMIT_ROWS = 1 << 14

#: ``progress(rows_done, rows_total)``, called after each committed batch.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IndexReport:
    """What one ``index_file`` run did. Times are wall seconds of this run."""

    store_path: Path
    model: str
    rows_added: int
    rows_total: int
    resumed_from: int
    calibration: str
    seconds: float
    seconds_reading: float
    seconds_embedding: float
    seconds_storing: float

    @property
    def storing_share(self) -> float:
        """Time spent quantizing and storing, as a fraction of the time spent embedding."""
        return self.seconds_storing / self.seconds_embedding if self.seconds_embedding else 0.0


def read_index_meta(store_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The model and text recipe a store was indexed with, or None for a store without them."""
    file = Path(store_path) / RECORDS_DIR / INDEX_META
    try:
        meta = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise StoreCorruptedError(f"cannot read {file}: {error}") from error
    if not isinstance(meta, dict) or not {"model", "dim", "text", "columns"} <= meta.keys():
        raise StoreCorruptedError(f"{file} is not a fastquant index description")
    return meta


def _write_index_meta(store_path: Path, meta: dict[str, Any]) -> None:
    (store_path / RECORDS_DIR).mkdir(exist_ok=True)
    write_file_atomically(
        store_path / RECORDS_DIR / INDEX_META, json.dumps(meta, indent=1).encode()
    )


def index_file(
    input_path: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    template: str | None = None,
    model: str | Encoder | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    calibration_rows: int = DEFAULT_CALIBRATION_ROWS,
    ranges: Any | None = None,
    rows: tuple[int, int | None] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    commit_seconds: float = DEFAULT_COMMIT_SECONDS,
    progress: bool | Progress = True,
    log: Callable[[str], None] | None = None,
) -> IndexReport:
    """Embed the records of ``input_path`` (parquet, CSV or JSONL) into the store at ``store_path``.

    The text of a record is its ``text_column`` or the ``template`` filled from its columns (e.g.
    ``"Name: {Medicine Name}. Uses: {Uses}"``). ``model`` is an :class:`~fastquant.encoders.Encoder`
    or a :func:`~fastquant.encoders.load_encoder` spec (default all-MiniLM-L6-v2). The int8 ranges
    are ``ranges (2, dim)`` if given, else calibrated on the first ``calibration_rows`` rows.
    ``rows=(start, stop)`` indexes only that row range of the input (a shard). Embedded batches are
    committed together every ``commit_seconds`` (0: every batch). ``progress`` is a progress bar
    (True), nothing (False) or a callback after each commit; ``log`` receives one-line notices.

    If the store exists, indexing resumes after its last committed row; the model, text recipe and
    input columns must match the ones it was built with.
    """
    started = time.perf_counter()
    positive_int("batch_size", batch_size)
    positive_int("calibration_rows", calibration_rows)
    say = log or (lambda message: None)
    source = TextSource(input_path)
    recipe = TextRecipe(source.columns, text_column=text_column, template=template)
    start, stop = _row_range(rows)
    available = source.count_rows()
    total = (available if stop is None else min(stop, available)) - start
    if total <= 0:
        raise InputError(f"no rows to index in {source.path}")

    store_path = Path(store_path)
    store, encoder = _open_existing(store_path, source, recipe, model, start)
    writer = _Writer(store_path, store, encoder, recipe, source, start, chunk_rows)
    done = len(writer)
    if done:
        _check_same_input(writer, source, start, done, total)
        say(f"resuming: {done:,} of {total:,} rows are already in {store_path}")
    bar = _Progress(progress, total, done)
    pending: list[tuple[Any, np.ndarray]] = []  # embedded, not yet committed
    try:
        last_commit = reading = time.perf_counter()
        for batch in source.batches(batch_size, start + done, start + total):
            embedding = time.perf_counter()
            writer.seconds_reading += embedding - reading
            pending.append((batch, encoder.encode(recipe.texts(batch))))
            reading = time.perf_counter()
            writer.seconds_embedding += reading - embedding
            rows_pending = sum(len(embeddings) for _, embeddings in pending)
            bar.embedded(len(writer) + rows_pending)
            if writer.store is None:
                if rows_pending < calibration_rows:
                    continue
                say(writer.create(ranges, pending))
            if rows_pending >= COMMIT_ROWS or reading - last_commit >= commit_seconds:
                writer.commit(pending)
                bar.committed(len(writer))
                pending, last_commit = [], time.perf_counter()
                reading = last_commit
        if pending:
            if writer.store is None:  # fewer rows than calibration_rows
                say(writer.create(ranges, pending))
            writer.commit(pending)
            bar.committed(len(writer))
    finally:
        bar.close()
        if writer.store is not None:
            writer.store.close()
    return IndexReport(
        store_path=store_path,
        model=encoder.name,
        rows_added=len(writer) - done,
        rows_total=len(writer),
        resumed_from=done,
        calibration=writer.calibration_source(),
        seconds=time.perf_counter() - started,
        seconds_reading=writer.seconds_reading,
        seconds_embedding=writer.seconds_embedding,
        seconds_storing=writer.seconds_storing,
    )


def _check_same_input(
    writer: _Writer, source: TextSource, start: int, done: int, total: int
) -> None:
    """Refuse to resume from an input that is not the one the store's rows came from."""
    if done > total:
        writer.store.close()
        raise InputError(
            f"{writer.store_path} holds {done:,} rows but {source.path} has only {total:,} to "
            "index: it is not the input the store was built from"
        )
    (last_input,) = next(source.batches(1, start + done - 1, start + done)).to_pylist()
    (last_stored,) = writer.records.get([done - 1])
    if last_input != last_stored:
        writer.store.close()
        raise InputError(
            f"row {start + done - 1:,} of {source.path} differs from the record stored for it in "
            f"{writer.store_path}: the input changed since it was indexed; index it into a new "
            "directory"
        )


def _row_range(rows: tuple[int, int | None] | None) -> tuple[int, int | None]:
    if rows is None:
        return 0, None
    start, stop = rows
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"rows must be (start, stop) with 0 <= start <= stop, got {rows}")
    return int(start), None if stop is None else int(stop)


def _open_existing(
    store_path: Path,
    source: TextSource,
    recipe: TextRecipe,
    model: str | Encoder | None,
    start: int,
) -> tuple[CorpusStore | None, Encoder]:
    """The store to resume (None if it does not exist yet) and the encoder to use."""
    if not (store_path / MANIFEST_NAME).exists():
        if store_path.exists() and (not store_path.is_dir() or any(store_path.iterdir())):
            raise StoreNotFoundError(
                f"{store_path} exists and is not a fastquant store; choose a new directory"
            )
        return None, _encoder(model)
    store = CorpusStore.open(store_path)
    meta = read_index_meta(store_path)
    if meta is None:
        if len(store):
            store.close()
            raise InputError(
                f"{store_path} holds rows that were not indexed from text (no "
                f"{RECORDS_DIR}/{INDEX_META}); index into a new directory"
            )
        encoder = _encoder(model)
    else:
        wanted = encoder_name(model) if isinstance(model, str) else getattr(model, "name", None)
        if wanted is not None and wanted != meta["model"]:
            store.close()
            raise InputError(
                f"{store_path} was indexed with model {meta['model']!r}, not {wanted!r}; "
                "use the same model or a new directory"
            )
        for key, now in (
            ("text", recipe.describe()),
            ("columns", source.columns),
            ("start_row", start),
        ):
            if meta.get(key) != now:
                store.close()
                raise InputError(
                    f"{store_path} was indexed with {key} {meta.get(key)!r}, not {now!r}; "
                    "re-run with the same input and options, or use a new directory"
                )
        encoder = model if model is not None and not isinstance(model, str) else None
        encoder = encoder or load_encoder(meta["model"])
    if store.dim != encoder.dim:
        store.close()
        raise InputError(
            f"{store_path} holds {store.dim}-d embeddings but model {encoder.name!r} makes "
            f"{encoder.dim}-d ones"
        )
    return store, encoder


def _encoder(model: str | Encoder | None) -> Encoder:
    return model if model is not None and not isinstance(model, str) else load_encoder(model)


class _Writer:
    """Commits embedded batches: records first, then the store's atomic append."""

    def __init__(
        self,
        store_path: Path,
        store: CorpusStore | None,
        encoder: Encoder,
        recipe: TextRecipe,
        source: TextSource,
        start: int,
        chunk_rows: int,
    ) -> None:
        self.store_path, self.store, self.encoder = store_path, store, encoder
        self.meta = {
            "model": encoder.name,
            "dim": encoder.dim,
            "text": recipe.describe(),
            "columns": source.columns,
            "source": str(source.path.resolve()),
            "start_row": start,
        }
        self.chunk_rows = chunk_rows
        self.records = RecordLog(store_path)
        self.seconds_reading = self.seconds_embedding = self.seconds_storing = 0.0
        if store is not None:
            self._prepare()

    def __len__(self) -> int:
        return 0 if self.store is None else len(self.store)

    def _prepare(self) -> None:
        """Lock the store, record how it is built, drop records the store never committed."""
        self.store.acquire_writer()
        if read_index_meta(self.store_path) is None:
            _write_index_meta(self.store_path, self.meta)
        self.records.truncate(len(self.store))
        self.records.require_rows(len(self.store))

    def create(self, ranges: Any | None, pending: list[tuple[Any, np.ndarray]]) -> str:
        """Create the store, calibrated on ``ranges`` or the ``pending`` embeddings; a notice."""
        if ranges is not None:
            self.store = CorpusStore.create(
                self.store_path, self.encoder.dim, ranges=ranges, chunk_rows=self.chunk_rows
            )
            notice = "int8 ranges: given"
        else:
            sample = np.concatenate([embeddings for _, embeddings in pending])
            if len(sample) < 2:
                raise InputError("at least two rows are needed to calibrate the int8 ranges")
            self.store = CorpusStore.create(
                self.store_path,
                self.encoder.dim,
                calibration_embeddings=sample,
                chunk_rows=self.chunk_rows,
                calibration_source=f"the first {len(sample):,} rows indexed",
            )
            notice = f"int8 ranges: calibrated on the first {len(sample):,} rows"
        self._prepare()
        return notice

    def commit(self, pending: list[tuple[Any, np.ndarray]]) -> None:
        """Store embedded batches as one commit: their records first, then their rows."""
        started = time.perf_counter()
        self.records.write(len(self.store), concat_batches([batch for batch, _ in pending]))
        self.store.append(np.concatenate([embeddings for _, embeddings in pending]))
        self.seconds_storing += time.perf_counter() - started

    def calibration_source(self) -> str:
        return "" if self.store is None else self.store.calibration_source or ""


class _Progress:
    """A tqdm bar of embedded rows (``progress=True``), a callback after each commit, or nothing."""

    def __init__(self, progress: bool | Progress, total: int, done: int) -> None:
        self.total = total
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=done, unit="rows", desc="indexing", dynamic_ncols=True
            )

    def embedded(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows - self.bar.n)

    def committed(self, rows: int) -> None:
        if self.callback is not None:
            self.callback(rows, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
