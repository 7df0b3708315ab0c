"""``CorpusStore``: a directory of fixed-size chunks of packed bits and int8 codes, searched in place.

Layout (every path relative to the store directory; see ``docs/store_format.md``)::

    manifest.json          format version, dim, chunk_rows, rows, chunks with row counts and CRC-32s
    calibration.npy        int8 ranges (2, dim) float32, minima then maxima
    centre.npy             (dim,) float32 centre of the bits (centred stores)
    chunks/000000.bits     raw (rows, ceil(dim / 8)) uint8, bits of x > centre (or x > 0), MSB first
    chunks/000000.codes    raw (rows, dim) int8, sentence-transformers int8 codes
    chunks/000000.factors  raw (rows, 2) uint16, bfloat16 row factors (centred stores)
    chunks/000000.g1.*     a chunk rewritten by compaction, with 000000.g1.ids: (rows,) int64 ids
    chunks/deleted-000001.ids  (n,) int64 ascending: the ids deleted and not yet compacted away
    writer.lock            flock'ed by the one process writing

Every row has an id, given in order by appends and never reused. Chunks hold ``chunk_rows`` rows
each, the last one up to that (compacted chunks fewer). An append writes past the committed end
of the last chunk (and into new chunks), flushes, and then commits by replacing the manifest
atomically; a delete writes a new list of deleted ids and commits the same way; compaction
writes new generations of the chunks that hold deleted rows, commits, then removes the old
files. Readers see the rows of the manifest they loaded; bytes and files beyond it are
invisible and are removed by the next writer once it has proven them leftovers
(``leftovers.py``). No file is followed through a symlink or read unless it is a regular file
(``safe_files.py``).
"""

from __future__ import annotations

import os
import threading
import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import _engine, validation
from ..backends import BACKEND_NAMES
from ..quantize import Calibration, centre_of, centred_checked, quantize_checked
from .building import building_directory
from .calibration_file import read_calibration, read_centre, write_calibration, write_centre
from .compaction import CompactionReport, store_bytes, write_compacted
from .deletions import read_deleted, write_deleted
from .errors import StoreCorruptedError, StoreError, StoreWriteError
from .files import create_new, map_rows, open_committed, write_at
from .leftovers import discard_leftovers
from .lock import WriterLock
from .manifest import (
    BIT_KINDS,
    CHUNK_DIR,
    ChunkRecord,
    Manifest,
    chunk_file,
    deleted_file,
    read_manifest,
    write_manifest,
)
from .safe_files import (
    CommittedFile,
    fsync_directory,
    remove_leftover,
    require_crc32,
    require_directory,
    require_single_link,
)

#: Rows per chunk file unless ``create`` is told otherwise: 1,048,576 rows of 1024-d are 128 MiB
#: of bits and 1 GiB of codes; a search scans each chunk with every thread.
DEFAULT_CHUNK_ROWS = 1 << 20

#: An append quantizes and writes this many rows at a time, bounding its temporary memory.
APPEND_SLICE_ROWS = 1 << 16

#: Times a reader reads the manifest again when a file it lists vanished (compaction removed it).
_LOAD_ATTEMPTS = 3

Rescore = Literal["int8", "bits", "none"]
Scan = Literal["asymmetric", "asymmetric-exact", "hamming", "hamming+asymmetric"]


@dataclass(frozen=True)
class Snapshot:
    """One committed state: its manifest and its rows as the search engine reads them.

    ``corpus`` holds the mapped (or, with ``bits_in_memory``, copied) chunks; its arrays keep
    their memory maps open for as long as the snapshot is referenced.
    """

    manifest: Manifest
    #: Its rows; deleted ones are not searchable (``corpus.allowed``).
    corpus: _engine.ChunkedCorpus
    #: The chunk files as they were opened: ``(bits, codes[, factors][, ids])`` per chunk.
    files: tuple[tuple[CommittedFile, ...], ...] = ()
    #: ``(n,) int64`` ids deleted and not compacted away, ascending.
    deleted: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def calibration(self) -> Calibration | None:
        return self.corpus.calibration

    @cached_property
    def query_bound(self) -> np.ndarray:
        """``(dim,) float64`` the ``bound`` of :func:`~fastquant.validation.as_queries` for
        searching these rows (:func:`~fastquant.validation.row_bound`)."""
        corpus = self.corpus
        return validation.row_bound(self.manifest.dim, corpus.calibration, corpus.centre)

    @property
    def live_rows(self) -> int:
        """Rows not deleted."""
        return self.corpus.searchable_rows

    def require_intact(self, path: Path) -> None:
        """Raise :class:`~fastquant.store.StoreCorruptedError` if a chunk file of the store at
        ``path`` was replaced or cut.

        One ``lstat`` per file; a search calls it before reading, so that a store damaged under
        it is an error rather than a SIGBUS. A file that compaction removed after committing a
        newer state is fine: its memory map stays valid and nothing can cut it any more. A file
        cut during the scan itself is not caught (see ``docs/store_format.md``).
        """
        missing = []
        for chunk_files in self.files:
            for file in chunk_files:
                problem = file.problem()
                if problem is None:
                    continue
                if not problem.startswith("can no longer be found"):
                    file.require_unchanged()
                missing.append(file)
        if missing and not _replaced_by_newer_state(path, self.manifest, missing):
            missing[0].require_unchanged()


class CorpusStore:
    """A chunked, memory-mapped, append-only store of quantized embeddings; see the module docstring.

    Make one with :meth:`create`, reopen it with :meth:`open`. Any number of processes may read and
    search a store while one appends; each sees the snapshot it opened (``refresh`` moves to the
    latest). A second writer gets :class:`~fastquant.store.StoreLockedError`.
    """

    def __init__(self, path: Path, *, bits_in_memory: bool) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.path = path
        self.bits_in_memory = bits_in_memory
        self._lock: WriterLock | None = None
        #: The manifest this writer checked the files against (or committed): bytes past it
        #: appeared under its lock, so they are its own and need no proof to be cut.
        self._proven: Manifest | None = None
        self._append_lock = threading.Lock()
        self._snapshot = self._load_latest(None)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | PathLike[str],
        dim: int,
        *,
        calibration_embeddings: Any | None = None,
        ranges: Any | None = None,
        centre: Any | None = None,
        bits: str = "centred",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        bits_in_memory: bool = False,
        calibration_source: str | None = None,
    ) -> CorpusStore:
        """Create an empty store at ``path`` (a new or empty directory) for ``dim``-dimensional embeddings.

        The int8 ranges come from ``ranges (2, dim)``, else from ``calibration_embeddings (m, dim)``,
        else from the first ``append`` (which then needs at least two rows); ``calibration_source``
        overrides how :attr:`calibration_source` describes them.

        ``bits="centred"`` (default) stores the bits of ``x > centre`` with two factors per row,
        which the asymmetric scan turns into estimates of ``q . x`` (``fastquant._engine.asymmetric``);
        the centre is ``centre (dim,)`` if given, else the mean of ``calibration_embeddings``,
        else the midpoint of ``ranges``, else the mean of the first append. ``bits="sign"`` stores
        plain sign bits ``x > 0`` (fastquant 0.1's layout, sentence-transformers' ``ubinary``),
        with no centre and no factors. The directory appears
        complete or not at all: it is built under a temporary name and renamed into place, so of
        several processes creating one store at once, one succeeds and the others get
        ``FileExistsError``. Build folders of dead processes are removed.
        """
        path = Path(path)
        dim = validation.positive_int("dim", dim)
        chunk_rows = validation.positive_int("chunk_rows", chunk_rows)
        bits = validation.choice("bits", bits, BIT_KINDS)
        if ranges is not None and calibration_embeddings is not None:
            raise ValueError("pass ranges or calibration_embeddings, not both")
        if centre is not None:
            if bits != "centred":
                raise ValueError("a centre is for bits='centred'; a store of sign bits has none")
            centre = validation.as_centre(centre, dim)
        calibration, source = None, None
        if ranges is not None:
            calibration, source = Calibration(ranges), "ranges given to create"
        elif calibration_embeddings is not None:
            calibration = Calibration.from_embeddings(calibration_embeddings)
            source = f"calibration_embeddings given to create ({len(calibration_embeddings)} rows)"
        source = calibration_source or source
        if calibration is not None and calibration.dim != dim:
            raise ValueError(f"the calibration has dimension {calibration.dim}, expected {dim}")
        if bits == "centred" and centre is None and calibration is not None:
            centre = (
                centre_of(calibration_embeddings)
                if calibration_embeddings is not None
                else ((calibration.ranges[0] + calibration.ranges[1]) / 2).astype(np.float32)
            )
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(
                f"cannot create a store at {path}: it exists and is not an empty directory"
            )
        with building_directory(path) as building:
            (building / CHUNK_DIR).mkdir()
            manifest = Manifest(dim=dim, chunk_rows=chunk_rows, bits=bits)
            if calibration is not None:
                crc = write_calibration(building, calibration)
                manifest = manifest.with_chunks(
                    (), calibration_crc32=crc, calibration_source=source
                )
            if centre is not None:
                manifest = manifest.with_chunks((), centre_crc32=write_centre(building, centre))
            write_manifest(building, manifest)
        return cls(path, bits_in_memory=bits_in_memory)

    @classmethod
    def open(cls, path: str | PathLike[str], *, bits_in_memory: bool = False) -> CorpusStore:
        """Open the store at ``path`` for searching (and appending).

        Missing or truncated files, an unreadable manifest or calibration raise
        :class:`~fastquant.store.StoreCorruptedError` naming the file; a store of a newer format
        raises :class:`~fastquant.store.StoreVersionError`. ``bits_in_memory`` copies the packed
        bits into RAM instead of scanning the memory map (int8 codes always stay on disk).
        """
        return cls(Path(path), bits_in_memory=bits_in_memory)

    def _load(self, manifest: Manifest, previous: Snapshot | None) -> Snapshot:
        """Map ``manifest``'s chunks and check them as ``open`` does.

        Maps of ``previous`` are reused only for chunks whose record and files did not change.
        """
        if (
            previous is not None
            and previous.manifest == manifest
            and not any(map(_changed, previous.files))
        ):
            return previous
        calibration = _calibration_for(self.path, manifest, previous)
        centre = _centre_for(self.path, manifest, previous)
        reusable = previous is not None and (
            (previous.manifest.dim, previous.manifest.chunk_rows, previous.manifest.bits)
            == (manifest.dim, manifest.chunk_rows, manifest.bits)
        )
        kept = {}
        if reusable:
            kept = {(c.file_id, c.generation): i for i, c in enumerate(previous.manifest.chunks)}
        if manifest.chunks:
            _require_chunk_dir(self.path / CHUNK_DIR)
        bits, codes, factors, ids, files = [], [], [], [], []
        for chunk in manifest.chunks:
            i = kept.get((chunk.file_id, chunk.generation))
            if (
                i is not None
                and previous.manifest.chunks[i] == chunk
                and not _changed(previous.files[i])
            ):
                bits.append(previous.corpus.bits[i])
                codes.append(previous.corpus.codes[i])
                factors.extend(previous.corpus.factors[i : i + 1])
                ids.append(previous.corpus.ids[i])
                files.append(previous.files[i])
                continue
            name = lambda kind, c=chunk: self.path / chunk_file(c.file_id, c.generation, kind)  # noqa: E731
            bit_rows, bits_on_disk = map_rows(
                name("bits"), chunk.rows, manifest.bits_width, np.uint8, random_access=False
            )
            if self.bits_in_memory:
                grown = None  # rows copied earlier, if they come from this very file
                if i is not None and previous.files[i][0].same_file(bits_on_disk):
                    grown = previous.corpus.bits[i]
                bit_rows = _copy_in_memory(bit_rows, grown, manifest.chunk_rows)
            code_rows, codes_on_disk = map_rows(
                name("codes"), chunk.rows, manifest.dim, np.int8, random_access=True
            )
            bits.append(bit_rows)
            codes.append(code_rows)
            files.append((bits_on_disk, codes_on_disk))
            if manifest.centred:
                factor_rows, factors_on_disk = map_rows(
                    name("factors"), chunk.rows, 2, np.uint16, random_access=False
                )
                factors.append(factor_rows)
                files[-1] += (factors_on_disk,)
            ids.append(None)
            if chunk.ids_crc32 is not None:
                id_rows, ids_on_disk = map_rows(
                    name("ids"), chunk.rows, 1, np.dtype("<i8"), random_access=False
                )
                ids[-1] = _checked_ids(name("ids"), id_rows.reshape(-1), chunk)
                files[-1] += (ids_on_disk,)
        _require_ids_in_order(self.path, manifest, ids)
        offsets = np.cumsum([0] + [chunk.rows for chunk in manifest.chunks], dtype=np.int64)
        corpus = _engine.ChunkedCorpus(
            manifest.dim,
            tuple(bits),
            tuple(codes),
            offsets,
            calibration,
            centre=centre,
            factors=tuple(factors),
            first_ids=np.array([chunk.first_id for chunk in manifest.chunks], dtype=np.int64),
            ids=tuple(ids),
        )
        deleted = read_deleted(self.path, manifest)
        if deleted.size:
            positions = corpus.to_positions(deleted)
            if (positions < 0).any():
                gone = deleted[positions < 0][0]
                raise StoreCorruptedError(
                    f"{self.path / CHUNK_DIR} lists id {gone} as deleted, but no chunk holds it"
                )
            corpus = corpus.without(positions)
        return Snapshot(manifest, corpus, tuple(files), deleted)

    def _load_latest(self, previous: Snapshot | None) -> Snapshot:
        """The snapshot of the latest manifest; read again if a compaction removed a file of the
        manifest read before it could be mapped."""
        for attempt in range(_LOAD_ATTEMPTS):
            manifest = read_manifest(self.path)
            try:
                return self._load(manifest, previous)
            except StoreCorruptedError:
                if attempt + 1 == _LOAD_ATTEMPTS or read_manifest(self.path) == manifest:
                    raise
        raise AssertionError("unreachable")

    def refresh(self) -> int:
        """Move to the latest committed state (rows appended by other processes); returns ``len(self)``.

        Checks what :meth:`open` checks; on an error the store keeps its current snapshot.
        """
        self._snapshot = self._load_latest(self._snapshot)
        return len(self)

    def close(self) -> None:
        """Release the writer lock, if this store holds it. Searching still works afterwards."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._proven = None

    def __enter__(self) -> CorpusStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- what it holds -----------------------------------------------------------------------

    def __len__(self) -> int:
        """Rows not deleted."""
        return self._snapshot.live_rows

    def __repr__(self) -> str:
        m = self._snapshot.manifest
        return (
            f"CorpusStore({str(self.path)!r}, rows={len(self)}, dim={m.dim}, "
            f"chunks={len(m.chunks)})"
        )

    @property
    def dim(self) -> int:
        return self._snapshot.manifest.dim

    @property
    def chunk_rows(self) -> int:
        return self._snapshot.manifest.chunk_rows

    @property
    def next_id(self) -> int:
        """The id the next appended row gets: every id below it was given once, never again."""
        return self._snapshot.manifest.next_id

    @property
    def deleted_rows(self) -> int:
        """Rows deleted and not yet compacted away (their space is returned by :meth:`compact`)."""
        return int(self._snapshot.deleted.size)

    def live_ids(self) -> np.ndarray:
        """``(len(self),) int64`` ids of the rows not deleted, ascending."""
        corpus = self._snapshot.corpus
        return corpus.to_ids(corpus.allowed_positions())

    @property
    def manifest(self) -> Manifest:
        """The committed state this store object reads."""
        return self._snapshot.manifest

    @property
    def calibration(self) -> Calibration | None:
        """The int8 ranges, or None until the first append of a store created without them."""
        return self._snapshot.calibration

    @property
    def snapshot(self) -> Snapshot:
        """The committed state this object reads: its manifest and its chunks (``corpus``).

        Read-only; :meth:`append` and :meth:`refresh` replace it with a newer one.
        """
        return self._snapshot

    @property
    def calibration_source(self) -> str | None:
        """Where the int8 ranges came from, e.g. ``"first append (1000 rows)"``."""
        return self._snapshot.manifest.calibration_source

    # -- writing -----------------------------------------------------------------------------

    def append(self, embeddings_f32: Any) -> np.ndarray:
        """Quantize ``embeddings_f32 (m, dim)`` float rows and add them; returns their ids ``(m,) int64``.

        Ids are consecutive from :attr:`next_id` (ids of deleted rows are never reused). The batch is committed atomically: after a
        crash the store holds either all of it or none of it. Invalid input (wrong dtype or shape,
        NaN/Inf, empty) raises before anything is written. The first append takes the writer lock
        and holds it until :meth:`close`.
        """
        batch = validation.as_embeddings("embeddings_f32", embeddings_f32, 2)
        validation.require_float32_range("embeddings_f32", batch)
        validation.require_dim("embeddings_f32", batch, self.dim)
        with self._append_lock:
            before = self._writer_state()
            try:
                written = self._commit(before, batch)
            except OSError as error:
                self._after_failed_commit(f"appending {batch.shape[0]} rows", before, error)
            self._committed(written, before)
        return np.arange(before.next_id, before.next_id + batch.shape[0], dtype=np.int64)

    def _commit(self, manifest: Manifest, batch: np.ndarray) -> Manifest:
        """Write ``batch`` after the committed rows (calibrating first if needed), then commit.

        Returns the manifest committed.
        """
        calibration, centre = self._snapshot.calibration, self._snapshot.corpus.centre
        if calibration is None:
            validation.require_calibration_rows("the first append", batch.shape[0])
            calibration = Calibration.from_embeddings(batch)
            manifest = manifest.with_chunks(
                manifest.chunks,
                calibration_crc32=write_calibration(self.path, calibration),
                calibration_source=f"first append ({batch.shape[0]} rows)",
            )
        if manifest.centred and centre is None:
            centre = centre_of(batch)
            manifest = manifest.with_chunks(
                manifest.chunks, centre_crc32=write_centre(self.path, centre)
            )
        chunks = _append_rows(self.path, manifest, calibration, centre, batch)
        manifest = manifest.with_chunks(chunks, next_id=manifest.next_id + batch.shape[0])
        write_manifest(self.path, manifest)
        return manifest

    def _after_failed_commit(self, what: str, before: Manifest, error: OSError) -> None:
        """Say whether a failed write (``what``: "appending 10 rows") was committed, free what it
        wrote if not; always raises."""
        try:
            now = read_manifest(self.path)
        except (StoreError, OSError):
            now = None
        if now is not None and now != before:
            self._snapshot = self._load(now, self._snapshot)
            raise StoreWriteError(
                f"{what} to {self.path} was committed, but flushing the directory failed, so it "
                f"may not survive a power loss: {error}"
            ) from error
        try:  # we hold the lock and proved ``before``: give back the space the failed write took
            discard_leftovers(self.path, before, proven=True)
        except OSError:
            pass
        raise StoreWriteError(
            f"{what} to {self.path} failed; nothing was committed: {error}"
        ) from error

    def delete(self, ids: Any) -> int:
        """Delete the rows ``ids`` (integer ids, or a boolean mask of length :attr:`next_id`);
        returns how many rows this deleted.

        No search returns a deleted row; its id is never given again, and its space comes back
        with :meth:`compact`. Committed atomically, like :meth:`append`: after a crash the store
        holds the old or the new state. An id no row ever had raises ``ValueError`` before
        anything is written; deleting a deleted row again changes nothing.
        """
        with self._append_lock:
            before = self._writer_state()
            wanted = validation.as_row_ids("ids", ids, before.next_id)
            snapshot = self._snapshot
            positions = snapshot.corpus.to_positions(wanted)
            present = wanted[positions >= 0]
            new = np.setdiff1d(present, snapshot.deleted, assume_unique=True)
            if not new.size:
                return 0
            generation = before.deleted.generation + 1 if before.deleted else 1
            try:
                deleted = np.insert(snapshot.deleted, np.searchsorted(snapshot.deleted, new), new)
                record = write_deleted(self.path, generation, deleted)
                fsync_directory(self.path / CHUNK_DIR)
                written = before.with_chunks(before.chunks, deleted=record)
                write_manifest(self.path, written)
            except OSError as error:
                self._after_failed_commit(f"deleting {new.size} rows", before, error)
            self._committed(written, before)
        return int(new.size)

    def compact(self, *, progress: bool = False) -> CompactionReport:
        """Rewrite the chunks that hold deleted rows without them, returning their space.

        Ids do not change and every search answers as before. Crash-safe: a ``kill -9`` at any
        moment leaves the old or the new state; readers keep searching the snapshot they hold.
        ``progress`` shows a bar of the rows copied. Returns what it did, with the store's bytes
        on disk before and after.
        """
        with self._append_lock:
            before = self._writer_state()
            bytes_before = store_bytes(self.path)
            snapshot = self._snapshot
            if not snapshot.deleted.size:
                return CompactionReport(0, 0, bytes_before, bytes_before)
            try:
                written, replaced, rewritten = write_compacted(
                    self.path, before, snapshot.corpus, progress
                )
                write_manifest(self.path, written)
            except OSError as error:
                self._after_failed_commit("compacting", before, error)
            self._committed(written, before)
            for file in replaced:
                _remove_replaced(file)
            fsync_directory(self.path / CHUNK_DIR)
        return CompactionReport(
            int(snapshot.deleted.size), rewritten, bytes_before, store_bytes(self.path)
        )

    def _writer_state(self) -> Manifest:
        """Take the writer lock, cut leftovers, and load the committed state; returns its manifest."""
        self._acquire()
        # Committed state comes from disk, never from memory: a snapshot can be stale after an
        # interrupted write.
        before = read_manifest(self.path)
        self._discard_leftovers(before)
        self._snapshot = self._load(before, self._snapshot)
        return before

    def _committed(self, written: Manifest, before: Manifest) -> None:
        """Move to ``written``, just committed over ``before``; remove ``before``'s list of
        deleted ids if ``written`` replaced it."""
        self._proven = written
        self._snapshot = self._load(written, self._snapshot)
        old = before.deleted
        if old is not None and (written.deleted is None or written.deleted != old):
            _remove_replaced(self.path / deleted_file(old.generation))

    def acquire_writer(self) -> None:
        """Take the writer lock now rather than at the first append (held until :meth:`close`).

        For writers that prepare files beside the store before appending. Raises
        :class:`~fastquant.store.StoreLockedError` when another writer holds it.
        """
        with self._append_lock:
            self._acquire()
            self._snapshot = self._load(read_manifest(self.path), self._snapshot)

    def _acquire(self) -> None:
        """Take the writer lock, unless held, and clear what a crashed writer left."""
        if self._lock is not None and self._lock.held:
            return
        self._lock = WriterLock(self.path)
        try:
            self._discard_leftovers(read_manifest(self.path))
        except BaseException:
            self.close()
            raise

    def _discard_leftovers(self, manifest: Manifest) -> None:
        """Cut what an interrupted append left past ``manifest`` (proving it first, once per state)."""
        discard_leftovers(self.path, manifest, proven=manifest == self._proven)
        self._proven = manifest

    # -- integrity ---------------------------------------------------------------------------

    def verify(self) -> int:
        """Check every committed byte against the manifest's sizes and CRC-32s; returns bytes checked.

        Raises :class:`~fastquant.store.StoreCorruptedError` naming the first broken file.
        """
        manifest = read_manifest(self.path)
        checked = 0
        if manifest.calibration_crc32 is not None:
            read_calibration(self.path, manifest)
        if manifest.centre_crc32 is not None:
            read_centre(self.path, manifest)
        if manifest.chunks:
            _require_chunk_dir(self.path / CHUNK_DIR)
        read_deleted(self.path, manifest)
        for chunk in manifest.chunks:
            for name, width, expected in manifest.chunk_files(chunk):
                file, size = self.path / name, chunk.rows * width
                fd = open_committed(file, size, chunk.rows)
                try:
                    require_crc32(fd, size, expected, file)
                finally:
                    os.close(fd)
                checked += size
        return checked

    # -- searching ---------------------------------------------------------------------------

    def search(
        self,
        query_f32: Any,
        k: int = _engine.DEFAULT_K,
        *,
        scan: Scan = _engine.DEFAULT_SCAN,
        rescore: Rescore = "int8",
        rescore_multiplier: int = _engine.DEFAULT_RESCORE_MULTIPLIER,
        backend: str = _engine.DEFAULT_BACKEND,
        threads: int | None = None,
        prefetch: bool = True,
        filter: Any | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest rows of each query: a scan of the bits for candidates, then their rescoring.

        Args:
            query_f32: ``(q, dim)`` float queries (or one ``(dim,)`` row), normalized like the corpus.
            k: results per query; at most ``len(self)`` are returned.
            scan: ``"asymmetric"`` (default) scores every row's bits against the query
                quantized to ternary values and narrows that top list, 4 times as long, by the
                asymmetric score (the query quantized to 4 bits: an estimate of ``q . x`` on a
                centred store); ``"asymmetric-exact"`` gives every row the asymmetric score;
                ``"hamming"`` ranks rows by Hamming distance to the query's bits;
                ``"hamming+asymmetric"`` narrows a Hamming top list 10 times as long by the
                asymmetric score. See ``fastquant._engine.search``.
            rescore: ``"int8"`` scores the candidates with the float query against their dequantized
                int8 codes (read from disk); ``"bits"`` with the float query against their bits
                (``q . (2b - 1)``, BPR; the asymmetric estimate's float form on a centred store);
                ``"none"`` returns the scan's ranking and scores (Hamming: ``dim - 2 * distance``).
            rescore_multiplier: the scan keeps ``k * rescore_multiplier`` candidates to rescore.
            backend: scan engine: ``"numba"``, ``"numpy"``, ``"faiss"`` or ``"usearch"`` for
                Hamming distances; ``"numba"`` or ``"numpy"`` for the asymmetric scan.
            threads: threads for the scan; default all cores.
            prefetch: announce the candidates' int8 pages to the OS before reading them
                (fewer page-fault round trips when the codes are not in memory).
            filter: only these rows may be returned: ids (an integer array) or a boolean mask
                of length :attr:`next_id`. Applied inside the scan: the answer is, ids and
                scores, the one a store of the allowed rows alone gives. Ids deleted are skipped.

        Returns:
            ``scores (q, k') float32`` descending and ``ids (q, k') int64``, ``k'`` = ``k`` or the
            rows that may be returned, if fewer (deleted rows never are); equal scores are
            ordered by ascending id. The answer does not depend on the chunk size.

        Raises :class:`~fastquant.store.StoreCorruptedError` if a chunk file was replaced or cut
        short since it was opened.
        """
        snapshot = self._snapshot
        queries = _queries(snapshot, query_f32)
        k = validation.positive_int("k", k)
        scan = validation.choice("scan", scan, _engine.SCANS)
        rescore = validation.choice("rescore", rescore, _engine.RESCORE_MODES)
        multiplier = validation.positive_int("rescore_multiplier", rescore_multiplier)
        backend = _scan_backend(scan, backend)
        corpus = _filtered(snapshot, filter)
        snapshot.require_intact(self.path)
        scores, positions = _engine.search(
            corpus,
            queries,
            k,
            scan=scan,
            rescore=rescore,
            rescore_multiplier=multiplier,
            backend=backend,
            threads=validation.thread_count(threads),
            prefetch=bool(prefetch),
        )
        return scores, corpus.to_ids(positions)

    def exact_search(
        self,
        query_f32: Any,
        k: int = _engine.DEFAULT_K,
        *,
        threads: int | None = None,
        filter: Any | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exhaustive int8 search: every row's dequantized dot product with each query, no binary filter.

        Reads every int8 code, 8x the bytes of the binary scan; takes ``filter`` and returns
        (and raises) as :meth:`search`.
        """
        snapshot = self._snapshot
        queries = _queries(snapshot, query_f32)
        k = validation.positive_int("k", k)
        threads = validation.thread_count(threads)
        corpus = _filtered(snapshot, filter)
        if corpus.searchable_rows == 0:
            return _engine.no_results(queries.shape[0])
        snapshot.require_intact(self.path)
        scores, positions = _engine.exact_int8(corpus, queries, k, threads)
        return scores, corpus.to_ids(positions)


def _filtered(snapshot: Snapshot, filter: Any | None) -> _engine.ChunkedCorpus:
    """The snapshot's corpus with only the rows of ``filter`` (ids or mask) searchable."""
    if filter is None:
        return snapshot.corpus
    ids = validation.as_row_ids("filter", filter, snapshot.manifest.next_id)
    positions = snapshot.corpus.to_positions(ids)
    return snapshot.corpus.restricted(positions[positions >= 0])


def _queries(snapshot: Snapshot, query_f32: Any) -> np.ndarray:
    """Validated ``(q, dim) float32`` queries whose scores cannot overflow float32
    (:func:`~fastquant.validation.row_bound`)."""
    return validation.as_queries(query_f32, snapshot.manifest.dim, bound=snapshot.query_bound)


def _scan_backend(scan: str, backend: Any) -> str:
    """``backend`` if it can run ``scan``; the asymmetric scan has no faiss or usearch engine."""
    backend = validation.choice("backend", backend, BACKEND_NAMES)
    if scan.startswith("asymmetric") and backend not in _engine.ASYMMETRIC_BACKENDS:
        raise ValueError(
            f"scan={scan!r} runs on backend 'numba' or 'numpy'; {backend} scores Hamming "
            "distances only: use scan='hamming' or scan='hamming+asymmetric' with it"
        )
    return backend


def _calibration_for(
    path: Path, manifest: Manifest, previous: Snapshot | None
) -> Calibration | None:
    """``manifest``'s int8 ranges: ``previous``'s if it read the same file for the same ``dim``."""
    if manifest.calibration_crc32 is None:
        return None
    if (
        previous is not None
        and previous.calibration is not None
        and previous.manifest.calibration_crc32 == manifest.calibration_crc32
        and previous.calibration.dim == manifest.dim
    ):
        return previous.calibration
    return read_calibration(path, manifest)


def _centre_for(path: Path, manifest: Manifest, previous: Snapshot | None) -> np.ndarray | None:
    """``manifest``'s centre: ``previous``'s if it read the same file for the same ``dim``."""
    if manifest.centre_crc32 is None:
        return None
    kept = None if previous is None else previous.corpus.centre
    if (
        kept is not None
        and previous.manifest.centre_crc32 == manifest.centre_crc32
        and kept.shape == (manifest.dim,)
    ):
        return kept
    return read_centre(path, manifest)


def _remove_replaced(file: Path) -> None:
    """Remove ``file``, which a newer committed state no longer lists; a failure leaves it to
    the next writer (``leftovers.py``)."""
    try:
        remove_leftover(file)
    except (OSError, StoreError):
        pass


def _checked_ids(file: Path, ids: np.ndarray, chunk: ChunkRecord) -> np.ndarray:
    """A compacted chunk's ids, which must start at its ``first_id`` and ascend."""
    if ids[0] != chunk.first_id or (ids.size > 1 and np.any(ids[1:] <= ids[:-1])):
        raise StoreCorruptedError(
            f"{file} does not hold ascending ids from {chunk.first_id}: it was changed"
        )
    return ids


def _require_ids_in_order(path: Path, manifest: Manifest, ids: list) -> None:
    """Every chunk's ids lie below the next chunk's first id (and below ``next_id``)."""
    for i, chunk in enumerate(manifest.chunks):
        last = chunk.first_id + chunk.rows - 1 if ids[i] is None else int(ids[i][-1])
        limit = (
            manifest.chunks[i + 1].first_id if i + 1 < len(manifest.chunks) else manifest.next_id
        )
        if last >= limit:
            raise StoreCorruptedError(
                f"{path / CHUNK_DIR}: chunk {i}'s ids run to {last}, past {limit - 1}"
            )


def _replaced_by_newer_state(path: Path, manifest: Manifest, missing: list[CommittedFile]) -> bool:
    """Whether files ``missing`` from ``manifest``'s state were removed by a newer commit that no
    longer lists them (compaction), rather than lost."""
    try:
        now = read_manifest(path)
    except (StoreError, OSError):
        return False
    if now == manifest:
        return False
    listed = {path / name for chunk in now.chunks for name, _, _ in now.chunk_files(chunk)}
    return not any(file.path in listed for file in missing)


def _require_chunk_dir(path: Path) -> None:
    try:
        require_directory(path)
    except FileNotFoundError:
        raise StoreCorruptedError(f"{path} is missing: the manifest lists chunks") from None


def _changed(files: tuple[CommittedFile, ...]) -> bool:
    return any(file.problem() is not None for file in files)


def _copy_in_memory(mapped: np.ndarray, previous: np.ndarray | None, capacity: int) -> np.ndarray:
    """The rows of ``mapped (n, w)`` in RAM, as a view of the first ``n`` rows of a buffer.

    When ``previous`` is such a view of the same chunk's first rows and its buffer has room, only
    the new rows are copied; otherwise the buffer is reallocated with room to double (up to
    ``capacity``). Views handed out earlier stay valid: their rows never change.
    """
    rows = mapped.shape[0]
    buffer = previous.base if previous is not None else None
    kept = previous.shape[0] if previous is not None else 0
    if not isinstance(buffer, np.ndarray) or buffer.shape[0] < rows:
        buffer = np.empty((min(capacity, max(rows, 2 * kept)), mapped.shape[1]), np.uint8)
        if previous is not None:
            buffer[:kept] = previous
    buffer[kept:rows] = mapped[kept:rows]
    return buffer[:rows]


def _append_rows(
    path: Path,
    manifest: Manifest,
    calibration: Calibration,
    centre: np.ndarray | None,
    batch: np.ndarray,
) -> tuple[ChunkRecord, ...]:
    """Write ``batch (m, dim)`` after the committed rows, flush it, and return the new chunk list.

    The last chunk is written only if it holds exactly its committed bytes (the leftovers were
    cut) and has no other links; new chunk files must not exist yet.
    """
    chunks = list(manifest.chunks)
    chunk_rows = manifest.chunk_rows
    done, created = 0, False
    while done < batch.shape[0]:
        if not chunks or not _takes_rows(chunks[-1], chunk_rows, manifest.next_id + done):
            file_id = chunks[-1].file_id + 1 if chunks else 0
            chunks.append(
                ChunkRecord(
                    0,
                    0,
                    0,
                    0 if manifest.centred else None,
                    file_id=file_id,
                    first_id=manifest.next_id + done,
                )  # fmt: skip
            )
            created = True
        chunk = chunks[-1]
        take = min(batch.shape[0] - done, chunk_rows - chunk.rows)
        files = manifest.chunk_files(chunk)
        crcs = [chunk.bits_crc32, chunk.codes_crc32, chunk.factors_crc32][: len(files)]
        names = [name for name, _, _ in files]
        fds: list[int] = []
        try:
            for name, width, _ in files:
                fds.append(_open_for_append(path / name, chunk.rows, width))
            for lo in range(done, done + take, APPEND_SLICE_ROWS):
                rows = batch[lo : min(lo + APPEND_SLICE_ROWS, done + take)]
                at = chunk.rows + lo - done
                parts = _row_files(rows, calibration, centre)
                for i, (fd, part, (_, width, _)) in enumerate(zip(fds, parts, files)):
                    write_at(fd, at * width, part)
                    crcs[i] = zlib.crc32(part, crcs[i])
            for fd in fds:
                os.fsync(fd)
        except StoreError:
            raise
        except OSError as error:
            raise OSError(
                error.errno, f"{error.strerror} (writing {' and '.join(names)})"
            ) from error
        finally:
            for fd in fds:
                os.close(fd)
        chunks[-1] = replace(chunk, rows=chunk.rows + take, **dict(zip(_CRC_FIELDS, crcs)))
        done += take
    if created:
        fsync_directory(path / CHUNK_DIR)
    return tuple(chunks)


#: The CRC fields of a chunk record, in the order of ``Manifest.chunk_files``.
_CRC_FIELDS = ("bits_crc32", "codes_crc32", "factors_crc32")


def _takes_rows(chunk: ChunkRecord, chunk_rows: int, next_id: int) -> bool:
    """Whether the next append's rows (ids from ``next_id``) go into ``chunk``, the last one."""
    return chunk.appendable and chunk.rows < chunk_rows and chunk.first_id + chunk.rows == next_id


def _row_files(
    rows: np.ndarray, calibration: Calibration, centre: np.ndarray | None
) -> list[np.ndarray]:
    """What ``rows (m, dim)`` add to each chunk file: bits, int8 codes and, centred, factors."""
    codes = quantize_checked(rows, "int8", calibration)
    if centre is None:
        return [quantize_checked(rows, "ubinary", None), codes]
    bits, factors = centred_checked(rows, centre)
    return [bits, codes, factors]


def _open_for_append(file: Path, rows: int, width: int) -> int:
    """``file`` opened to write rows after its ``rows`` committed ones (``width`` bytes each)."""
    if rows == 0:
        return create_new(file, "an append")
    fd = open_committed(file, rows * width, rows, os.O_WRONLY)
    try:
        require_single_link(fd, file)
        size = os.fstat(fd).st_size
        if size != rows * width:
            raise StoreCorruptedError(
                f"{file} changed during an append: {size:,} bytes, {rows * width:,} committed"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd
