"""The stages of indexing, shared by :func:`~fastquant.embed.index_file` and ``distributed.index``.

1. reading: record batches of the input (:meth:`fastquant.sources.TextSource.batches`);
2. vectors: a :class:`VectorSource` turns each batch into vectors and the records kept —
   :class:`TextVectors` embeds each record's text with a model, the sources of
   :mod:`fastquant.precomputed` take vectors computed elsewhere (a parquet column, a ``.npy``
   file) (:func:`embedded_batches` runs stages 1 and 2 and times them);
3. calibration: a new store's int8 ranges come from the input's first batches
   (:func:`first_batches`, :func:`calibration_sample`);
4. committing: embedded batches are grouped into commits by a :class:`CommitPolicy`;
5. progress: :class:`Progress` shows rows done as a bar or passes them to a callback.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import pyarrow as pa

from .encoders import Encoder
from .sources import TextRecipe
from .validation import require_calibration_rows

#: Embedded rows are committed at least this often (seconds), so an interruption loses little work
#: while a fast model does not pay a commit (several fsyncs) per batch.
DEFAULT_COMMIT_SECONDS = 2.0
#: ... and at least every this many rows, which bounds the memory held between commits.
COMMIT_ROWS = 1 << 14

#: ``progress(rows_done, rows_total)``, called after each commit.
ProgressCallback = Callable[[int, int], None]


class VectorSource(Protocol):
    """Where the vectors of a batch of records come from; recorded in the store's description."""

    #: The model's :func:`~fastquant.encoders.load_encoder` spec (``IndexDescription.model``),
    #: None for vectors computed elsewhere.
    model: str | None
    #: Vector dimension.
    dim: int

    def describe(self) -> dict[str, dict[str, str]]:
        """How a record becomes a vector, as stored: ``{"text": recipe}`` (``IndexDescription.text``)
        or ``{"vectors": where}`` (``IndexDescription.vectors``)."""
        ...

    def records(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """What of an input batch is kept as its records (the vectors themselves are not)."""
        ...

    def vectors(self, records: pa.RecordBatch, first_row: int) -> np.ndarray:
        """``(records.num_rows, dim) float32`` vectors of an input batch whose first row is row
        ``first_row`` of the input, one per record, in order."""
        ...


class TextVectors:
    """Each record's text (from ``recipe``) embedded by ``encoder``: the text pipeline's vectors."""

    def __init__(self, recipe: TextRecipe, encoder: Encoder) -> None:
        self.recipe, self.encoder = recipe, encoder
        self.model, self.dim = encoder.name, encoder.dim

    def describe(self) -> dict[str, dict[str, str]]:
        return {"text": self.recipe.describe()}

    def records(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def vectors(self, records: pa.RecordBatch, first_row: int) -> np.ndarray:
        return self.encoder.encode(self.recipe.texts(records))


@dataclass(frozen=True)
class EmbeddedBatch:
    """A batch of input records and their vectors ``(len(records), dim) float32``."""

    records: pa.RecordBatch
    vectors: np.ndarray

    def __len__(self) -> int:
        return self.records.num_rows


@dataclass
class StageSeconds:
    """Wall seconds spent in each stage of one run."""

    reading: float = 0.0
    embedding: float = 0.0
    storing: float = 0.0


def embedded_batches(
    record_batches: Iterable[pa.RecordBatch],
    source: VectorSource,
    seconds: StageSeconds,
    first_row: int = 0,
) -> Iterator[EmbeddedBatch]:
    """Each record batch (the first is row ``first_row`` of the input) with its vectors, as
    ``source`` keeps them; time spent reading and making vectors is added to ``seconds`` (time
    the consumer spends between batches is not)."""
    batches = iter(record_batches)
    while True:
        reading = time.perf_counter()
        records = next(batches, None)
        if records is None:
            return
        embedding = time.perf_counter()
        vectors = source.vectors(records, first_row)
        seconds.reading += embedding - reading
        seconds.embedding += time.perf_counter() - embedding
        yield EmbeddedBatch(source.records(records), vectors)
        first_row += records.num_rows


def first_batches(batches: Iterator[EmbeddedBatch], rows: int) -> list[EmbeddedBatch]:
    """The first batches of ``batches`` holding at least ``rows`` rows (all, if they hold fewer).

    A new store is calibrated on these: the first ``rows`` rows rounded up to whole batches. The
    rest of ``batches`` is left to iterate.
    """
    first: list[EmbeddedBatch] = []
    held = 0
    for batch in batches:
        first.append(batch)
        held += len(batch)
        if held >= rows:
            break
    return first


def calibration_sample(first: Sequence[EmbeddedBatch]) -> np.ndarray:
    """The vectors of ``first`` (see :func:`first_batches`), which a new store's int8 ranges and
    the centre of its bits come from: two rows or more."""
    sample = np.concatenate([batch.vectors for batch in first])
    require_calibration_rows("the input's first batches", len(sample))
    return sample


#: Anything with a row count: an EmbeddedBatch.
Batch = TypeVar("Batch", bound=Sized)


class CommitPolicy:
    """When to commit: once ``rows`` rows wait, or ``seconds`` after the last commit (0: every batch).

    The clock starts when the policy is made, at the start of a run; ``clock`` returns seconds.
    """

    def __init__(
        self,
        seconds: float = DEFAULT_COMMIT_SECONDS,
        rows: int = COMMIT_ROWS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.seconds, self.rows, self.clock = seconds, rows, clock
        self._last_commit = clock()

    def groups(self, first: Sequence[Batch], rest: Iterable[Batch]) -> Iterator[list[Batch]]:
        """``first`` then ``rest`` in groups to commit, each as soon as it is due; the last group
        takes what is left. ``first`` (the batches a store was calibrated on) is never split."""
        group: list[Batch] = []
        held = 0  # rows in group
        for arrived in itertools.chain([list(first)], ([batch] for batch in rest)):
            group += arrived
            held += sum(map(len, arrived))
            if group and (held >= self.rows or self.clock() - self._last_commit >= self.seconds):
                yield group
                group, held, self._last_commit = [], 0, self.clock()
        if group:
            yield group


class Progress:
    """Rows done out of ``total``: a tqdm bar (``progress=True``: rows, rows/s, ETA), a callback
    ``progress(rows_done, total)`` after each commit, or nothing (``False``).

    The rows may come in ``parts`` (shards) that report their own counts, from any thread.
    Use as a context manager (closes the bar).
    """

    def __init__(
        self, progress: bool | ProgressCallback, total: int, *, done: int = 0, parts: int = 1
    ) -> None:
        self.total = total
        self._callback = progress if callable(progress) else None
        self._committed = [0] * parts
        self._committed[0] = done
        self._lock = threading.Lock()
        self._bar = None
        if progress and self._callback is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=done, unit="rows", desc="indexing", dynamic_ncols=True
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.close()

    def track(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """``batches`` as they are, the bar moving by each one's rows as it passes (embedded rows
        show before they are committed)."""
        for batch in batches:
            if self._bar is not None:
                self._bar.update(len(batch))
            yield batch

    def committed(self, rows_done: int, part: int = 0) -> None:
        """Part ``part`` has committed ``rows_done`` of its rows (late, smaller counts are ignored)."""
        with self._lock:
            self._committed[part] = max(self._committed[part], rows_done)
            done = sum(self._committed)
            self._show(done)
            if self._callback is not None:
                self._callback(done, self.total)

    def _show(self, rows: int) -> None:
        if self._bar is not None and rows > self._bar.n:
            self._bar.update(rows - self._bar.n)
