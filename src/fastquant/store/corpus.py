"""``CorpusStore``: a directory of fixed-size chunks of packed bits and int8 codes, searched in place.

Layout (every path relative to the store directory; see ``docs/store_format.md``)::

    manifest.json          format version, dim, chunk_rows, rows, chunks with row counts and CRC-32s
    calibration.npy        int8 ranges (2, dim) float32, minima then maxima
    centre.npy             (dim,) float32 centre of the bits (centred stores)
    chunks/000000.bits     raw (rows, ceil(dim / 8)) uint8, bits of x > centre (or x > 0), MSB first
    chunks/000000.codes    raw (rows, dim) int8, sentence-transformers int8 codes
    chunks/000000.factors  raw (rows, 2) uint16, bfloat16 row factors (centred stores)
    writer.lock            flock'ed by the one process appending

Chunks hold ``chunk_rows`` rows each, the last one up to that. Rows are only ever added: an
append writes past the committed end of the last chunk (and into new chunks), flushes, and then
commits by replacing the manifest atomically. Readers see the rows of the manifest they loaded;
bytes beyond it are invisible and are cut off by the next writer once it has proven them
leftovers (``leftovers.py``). No file is followed through a symlink or read unless it is a
regular file (``safe_files.py``).
"""

from __future__ import annotations

import os
import threading
import zlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import _engine, validation
from ..backends import BACKEND_NAMES
from ..quantize import Calibration, centre_of, centred_checked, quantize_checked
from .building import building_directory
from .calibration_file import read_calibration, read_centre, write_calibration, write_centre
from .errors import StoreCorruptedError, StoreError, StoreWriteError
from .files import map_rows, open_committed, write_at
from .leftovers import discard_leftovers
from .lock import WriterLock
from .manifest import (
    BIT_KINDS,
    CHUNK_DIR,
    ChunkRecord,
    Manifest,
    bits_file,
    codes_file,
    factors_file,
    read_manifest,
    write_manifest,
)
from .safe_files import (
    SAFE_OPEN_FLAGS,
    CommittedFile,
    fsync_directory,
    require_crc32,
    require_directory,
    require_single_link,
)

#: Rows per chunk file unless ``create`` is told otherwise: 1,048,576 rows of 1024-d are 128 MiB
#: of bits and 1 GiB of codes; a search scans each chunk with every thread.
DEFAULT_CHUNK_ROWS = 1 << 20

#: An append quantizes and writes this many rows at a time, bounding its temporary memory.
APPEND_SLICE_ROWS = 1 << 16

Rescore = Literal["int8", "bits", "none"]
Scan = Literal["asymmetric", "hamming", "hamming+asymmetric"]


@dataclass(frozen=True)
class Snapshot:
    """One committed state: its manifest and its rows as the search engine reads them.

    ``corpus`` holds the mapped (or, with ``bits_in_memory``, copied) chunks; its arrays keep
    their memory maps open for as long as the snapshot is referenced.
    """

    manifest: Manifest
    corpus: _engine.ChunkedCorpus
    #: The chunk files as they were opened: ``(bits, codes[, factors])`` per chunk.
    files: tuple[tuple[CommittedFile, ...], ...] = ()

    @property
    def calibration(self) -> Calibration | None:
        return self.corpus.calibration

    def require_intact(self) -> None:
        """Raise :class:`~fastquant.store.StoreCorruptedError` if a chunk file was replaced or cut.

        One ``lstat`` per file; a search calls it before reading, so that a store damaged under
        it is an error rather than a SIGBUS. A file cut during the scan itself is not caught
        (see ``docs/store_format.md``).
        """
        for chunk_files in self.files:
            for file in chunk_files:
                file.require_unchanged()


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
        self._snapshot = self._load(read_manifest(path), None)

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

        Maps of ``previous`` are reused only for chunks whose record and file did not change.
        """
        calibration = _calibration_for(self.path, manifest, previous)
        centre = _centre_for(self.path, manifest, previous)
        reusable = previous is not None and (
            (previous.manifest.dim, previous.manifest.chunk_rows, previous.manifest.bits)
            == (manifest.dim, manifest.chunk_rows, manifest.bits)
        )
        kept = previous if reusable else None
        if manifest.chunks:
            _require_chunk_dir(self.path / CHUNK_DIR)
        bits, codes, factors, files = [], [], [], []
        for i, chunk in enumerate(manifest.chunks):
            old = kept is not None and i < len(kept.files)
            if old and kept.manifest.chunks[i] == chunk and not _changed(kept.files[i]):
                bits.append(kept.corpus.bits[i])
                codes.append(kept.corpus.codes[i])
                factors.extend(kept.corpus.factors[i : i + 1])
                files.append(kept.files[i])
                continue
            bit_rows, bits_on_disk = map_rows(
                self.path / bits_file(i),
                chunk.rows,
                manifest.bits_width,
                np.uint8,
                random_access=False,
            )
            if self.bits_in_memory:
                grown = None  # rows copied earlier, if they come from this very file
                if old and kept.files[i][0].same_file(bits_on_disk):
                    grown = kept.corpus.bits[i]
                bit_rows = _copy_in_memory(bit_rows, grown, manifest.chunk_rows)
            code_rows, codes_on_disk = map_rows(
                self.path / codes_file(i), chunk.rows, manifest.dim, np.int8, random_access=True
            )
            bits.append(bit_rows)
            codes.append(code_rows)
            files.append((bits_on_disk, codes_on_disk))
            if manifest.centred:
                factor_rows, factors_on_disk = map_rows(
                    self.path / factors_file(i), chunk.rows, 2, np.uint16, random_access=False
                )
                factors.append(factor_rows)
                files[-1] += (factors_on_disk,)
        offsets = np.cumsum([0] + [chunk.rows for chunk in manifest.chunks], dtype=np.int64)
        corpus = _engine.ChunkedCorpus(
            manifest.dim,
            tuple(bits),
            tuple(codes),
            offsets,
            calibration,
            centre=centre,
            factors=tuple(factors),
        )
        return Snapshot(manifest, corpus, tuple(files))

    def refresh(self) -> int:
        """Move to the latest committed state (rows appended by other processes); returns ``len(self)``.

        Checks what :meth:`open` checks; on an error the store keeps its current snapshot.
        """
        self._snapshot = self._load(read_manifest(self.path), self._snapshot)
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
        return self._snapshot.corpus.rows

    def __repr__(self) -> str:
        m = self._snapshot.manifest
        return f"CorpusStore({str(self.path)!r}, rows={len(self)}, dim={m.dim}, chunks={len(m.chunks)})"

    @property
    def dim(self) -> int:
        return self._snapshot.manifest.dim

    @property
    def chunk_rows(self) -> int:
        return self._snapshot.manifest.chunk_rows

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

        Ids are consecutive from the old ``len(self)``. The batch is committed atomically: after a
        crash the store holds either all of it or none of it. Invalid input (wrong dtype or shape,
        NaN/Inf, empty) raises before anything is written. The first append takes the writer lock
        and holds it until :meth:`close`.
        """
        batch = validation.as_embeddings("embeddings_f32", embeddings_f32, 2)
        validation.require_float32_range("embeddings_f32", batch)
        validation.require_dim("embeddings_f32", batch, self.dim)
        with self._append_lock:
            self._acquire()
            # Committed state comes from disk, never from memory: a snapshot can be stale after an
            # interrupted append, and rows are written right after the last committed one.
            before = read_manifest(self.path)
            self._discard_leftovers(before)
            self._snapshot = self._load(before, self._snapshot)
            try:
                written = self._commit(before, batch)
            except OSError as error:
                self._after_failed_commit(batch.shape[0], before, error)
            self._proven = written
            self._snapshot = self._load(written, self._snapshot)
        return np.arange(before.rows, before.rows + batch.shape[0], dtype=np.int64)

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
        manifest = manifest.with_chunks(chunks)
        write_manifest(self.path, manifest)
        return manifest

    def _after_failed_commit(self, rows: int, before: Manifest, error: OSError) -> None:
        """Say whether a failed append was committed, free what it wrote if not; always raises."""
        try:
            now = read_manifest(self.path)
        except (StoreError, OSError):
            now = None
        if now is not None and now.rows != before.rows:
            self._snapshot = self._load(now, self._snapshot)
            raise StoreWriteError(
                f"appending {rows} rows to {self.path} was committed, but flushing the directory "
                f"failed, so the rows may not survive a power loss: {error}"
            ) from error
        try:  # we hold the lock and proved ``before``: give back the space the failed batch took
            discard_leftovers(self.path, before, proven=True)
        except OSError:
            pass
        raise StoreWriteError(
            f"appending {rows} rows to {self.path} failed; nothing was committed: {error}"
        ) from error

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
        for i, chunk in enumerate(manifest.chunks):
            for name, width, expected in manifest.chunk_files(i):
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
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest rows of each query: a scan of the bits for candidates, then their rescoring.

        Args:
            query_f32: ``(q, dim)`` float queries (or one ``(dim,)`` row), normalized like the corpus.
            k: results per query; at most ``len(self)`` are returned.
            scan: ``"asymmetric"`` (default) scores every row's bits against the query quantized
                to 4 bits (an estimate of ``q . x`` on a centred store); ``"hamming"`` ranks rows
                by Hamming distance to the query's bits; ``"hamming+asymmetric"`` narrows a
                Hamming top list 10 times as long by the asymmetric score. See
                ``fastquant._engine.search``.
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

        Returns:
            ``scores (q, k') float32`` descending and ``ids (q, k') int64``, ``k' = min(k, len(self))``;
            equal scores are ordered by ascending id. The answer does not depend on the chunk size.

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
        snapshot.require_intact()
        return _engine.search(
            snapshot.corpus,
            queries,
            k,
            scan=scan,
            rescore=rescore,
            rescore_multiplier=multiplier,
            backend=backend,
            threads=validation.thread_count(threads),
            prefetch=bool(prefetch),
        )

    def exact_search(
        self, query_f32: Any, k: int = _engine.DEFAULT_K, *, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exhaustive int8 search: every row's dequantized dot product with each query, no binary filter.

        Reads every int8 code, 8x the bytes of the binary scan; returns (and raises) as :meth:`search`.
        """
        snapshot = self._snapshot
        corpus = snapshot.corpus
        queries = _queries(snapshot, query_f32)
        k = validation.positive_int("k", k)
        threads = validation.thread_count(threads)
        if corpus.rows == 0:
            return _engine.no_results(queries.shape[0])
        snapshot.require_intact()
        return _engine.exact_int8(corpus, queries, k, threads)


def _queries(snapshot: Snapshot, query_f32: Any) -> np.ndarray:
    """Validated ``(q, dim) float32`` queries whose scores cannot overflow float32.

    Bound per dimension: the largest int8 value (or 1), plus the centre for centred bits, whose
    residuals the asymmetric scores estimate.
    """
    corpus = snapshot.corpus
    bound = 1.0 if corpus.calibration is None else validation.int8_bound(corpus.calibration)
    if corpus.centre is not None:
        bound = bound + np.abs(corpus.centre.astype(np.float64))
    bound = np.broadcast_to(bound, (snapshot.manifest.dim,))
    return validation.as_queries(query_f32, snapshot.manifest.dim, bound=bound)


def _scan_backend(scan: str, backend: Any) -> str:
    """``backend`` if it can run ``scan``; the asymmetric scan has no faiss or usearch engine."""
    backend = validation.choice("backend", backend, BACKEND_NAMES)
    if scan == "asymmetric" and backend not in _engine.ASYMMETRIC_BACKENDS:
        raise ValueError(
            f"scan='asymmetric' runs on backend 'numba' or 'numpy'; {backend} scores Hamming "
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
        if not chunks or chunks[-1].rows == chunk_rows:
            chunks.append(ChunkRecord(0, 0, 0, 0 if manifest.centred else None))
            created = True
        index, chunk = len(chunks) - 1, chunks[-1]
        take = min(batch.shape[0] - done, chunk_rows - chunk.rows)
        files = manifest.chunk_files(index)
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
        chunks[-1] = ChunkRecord(chunk.rows + take, *crcs)
        done += take
    if created:
        fsync_directory(path / CHUNK_DIR)
    return tuple(chunks)


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
        try:
            return os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE_OPEN_FLAGS, 0o644)
        except FileExistsError:
            raise StoreCorruptedError(
                f"{file} appeared during an append: no other process may write to the store"
            ) from None
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
