"""Compaction: rewrite the chunks that hold deleted rows without them, as a new generation.

Each such chunk's live rows are copied, in order, into new files ``chunks/NNNNNN.gG.*`` (``G``
one more than before) with an ``.ids`` file of their ids, flushed, and only then is a manifest
listing them (and no deleted ids) committed; a chunk left without rows is dropped. Until that
commit the new files are unlisted leftovers (the next writer removes them); after it, the old
files are (removed right away, or by the next writer). A reader that mapped the old files keeps
searching them: unlinked files stay valid for as long as they are mapped.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._engine import ChunkedCorpus
from .files import create_new, write_at
from .manifest import CHUNK_DIR, ChunkRecord, Manifest, chunk_file
from .safe_files import fsync_directory

#: Rows copied at a time, bounding compaction's memory (1024-d: 64 MiB of codes).
COPY_ROWS = 1 << 16


@dataclass(frozen=True)
class CompactionReport:
    """What :meth:`CorpusStore.compact` did: rows removed, chunks rewritten (or dropped), and
    the store's bytes on disk before and after."""

    rows_removed: int
    chunks_rewritten: int
    bytes_before: int
    bytes_after: int

    @property
    def bytes_returned(self) -> int:
        return self.bytes_before - self.bytes_after


def store_bytes(path: Path) -> int:
    """Bytes of the regular files of the store at ``path`` (its folder and ``chunks/``)."""
    total = 0
    for folder in (path, path / CHUNK_DIR):
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def write_compacted(
    path: Path, manifest: Manifest, corpus: ChunkedCorpus, progress: bool
) -> tuple[Manifest, list[Path], int]:
    """Write the new generation of every chunk of ``corpus`` (``manifest``'s rows) that holds
    deleted rows; returns the manifest to commit, the files it no longer lists, and the chunks
    rewritten or dropped. (The list of deleted ids it empties is the committer's to remove.)"""
    chunks: list[ChunkRecord] = []
    replaced: list[Path] = []
    work = [c for c in range(len(manifest.chunks)) if corpus.chunk_allowed(c) is not None]
    bar = _bar(progress, sum(manifest.chunks[c].rows for c in work))
    try:
        for c, chunk in enumerate(manifest.chunks):
            bitmap = corpus.chunk_allowed(c)
            if bitmap is None:
                chunks.append(chunk)
                continue
            replaced += [path / name for name, _, _ in manifest.chunk_files(chunk)]
            keep = np.flatnonzero(np.unpackbits(bitmap, count=chunk.rows, bitorder="little"))
            if keep.size:
                chunks.append(_write_chunk(path, manifest, corpus, c, chunk, keep))
            if bar is not None:
                bar.update(chunk.rows)
    finally:
        if bar is not None:
            bar.close()
    fsync_directory(path / CHUNK_DIR)
    return manifest.with_chunks(tuple(chunks), deleted=None), replaced, len(work)


def _write_chunk(
    path: Path,
    manifest: Manifest,
    corpus: ChunkedCorpus,
    c: int,
    chunk: ChunkRecord,
    keep: np.ndarray,
) -> ChunkRecord:
    """Rows ``keep`` of chunk ``c`` written as its next generation; returns its record."""
    ids = corpus.chunk_ids(c)
    sources = [("bits", corpus.bits[c]), ("codes", corpus.codes[c])]
    if manifest.centred:
        sources.append(("factors", corpus.factors[c]))
    sources.append(("ids", ids.reshape(-1, 1).astype("<i8")))
    generation = chunk.generation + 1
    crcs = {}
    for kind, rows in sources:
        file = path / chunk_file(chunk.file_id, generation, kind)
        fd = create_new(file, "compaction")
        try:
            crc = 0
            for lo in range(0, keep.size, COPY_ROWS):
                part = np.ascontiguousarray(rows[keep[lo : lo + COPY_ROWS]])
                write_at(fd, lo * part[0].nbytes, part)
                crc = zlib.crc32(part.view(np.uint8), crc)
            os.fsync(fd)
        except OSError as error:
            raise OSError(error.errno, f"{error.strerror} (writing {file})") from error
        finally:
            os.close(fd)
        crcs[kind] = crc
    return ChunkRecord(
        int(keep.size),
        crcs["bits"],
        crcs["codes"],
        crcs.get("factors"),
        file_id=chunk.file_id,
        generation=generation,
        first_id=int(ids[keep[0]]),
        ids_crc32=crcs["ids"],
    )


def _bar(progress: bool, rows: int):
    if not progress or not rows:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=rows, unit="rows", desc="compacting", dynamic_ncols=True)
