"""What a writer may cut: bytes and files an interrupted append left, proven never committed.

Before a write (and after a failed one) the writer removes what an interrupted write left: bytes
past the committed end of the last chunk, chunk files and lists of deleted ids the manifest does
not list (an interrupted append's new chunks, an interrupted compaction's new generation, or the
files a finished one replaced), and the temp files of ``manifest.json``, ``calibration.npy`` and
``centre.npy``. It cuts nothing it has not proven to be such a leftover:

1. the manifest proves itself: format 2 carries its checksum, checked by ``read_manifest``;
2. a chunk file with bytes past its committed end (only the last chunk is ever written) holds
   exactly its committed bytes: their CRC-32 matches the manifest's. This reads the committed
   bytes, once per writer and only when there is something to cut (after a crash): a cleanly
   closed store costs nothing;
3. everything else in ``chunks/`` must be a regular chunk file with one link; a directory, a
   symlink, a hard link or a file of another name is :class:`StoreCorruptedError`.

All checks run before the first byte is cut, so a refusal changes nothing. A format-1 manifest
(fastquant 0.1) has no checksum: its unlisted chunk files are deleted only when its last chunk
is partial (committed chunks fill in order, so nothing after a partial chunk was committed);
otherwise the writer refuses and says which files to move away.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .errors import StoreCorruptedError
from .files import open_committed
from .manifest import (
    CALIBRATION_NAME,
    CENTRE_NAME,
    CHUNK_DIR,
    MANIFEST_NAME,
    Manifest,
    deleted_file,
)
from .safe_files import (
    cut_leftovers,
    describe_kind,
    fsync_directory,
    remove_leftover,
    require_crc32,
    require_directory,
    require_single_link,
)

_CHUNK_NAME = re.compile(r"^(\d{6,}(\.g\d+)?\.(bits|codes|factors|ids)|deleted-\d{6,}\.ids)$")
_TEMP_NAME = re.compile(
    rf"^\.({'|'.join(map(re.escape, (MANIFEST_NAME, CALIBRATION_NAME, CENTRE_NAME)))})\.tmp-\d+$"
)


def discard_leftovers(path: Path, manifest: Manifest, *, proven: bool) -> None:
    """Cut the store at ``path`` back to ``manifest``'s committed state, proving first (see above).

    ``proven`` says this writer already checked the files against this very manifest and has
    held the lock since, so bytes past it are its own and need no proof. Raises
    :class:`StoreCorruptedError`, with nothing changed, when anything is not provably a leftover.
    """
    chunk_dir = path / CHUNK_DIR
    try:
        require_directory(chunk_dir)
    except FileNotFoundError:
        if manifest.chunks:
            raise StoreCorruptedError(
                f"{chunk_dir} is missing: the manifest lists {len(manifest.chunks)} chunks"
            ) from None
        chunk_dir.mkdir()
    removable = _unlisted_chunk_files(chunk_dir, manifest)
    fds: list[tuple[int, Path, int]] = []
    try:
        if manifest.chunks:
            fds = _open_last_chunk(path, manifest, proven=proven)
        for fd, file, committed in fds:
            cut_leftovers(fd, file, committed)
    finally:
        for fd, _, _ in fds:
            os.close(fd)
    for file in removable:
        remove_leftover(file)
    if removable:
        fsync_directory(chunk_dir)
    for entry in os.scandir(path):
        if _TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def _open_last_chunk(
    path: Path, manifest: Manifest, *, proven: bool
) -> list[tuple[int, Path, int]]:
    """The last chunk's files opened for writing, with their committed sizes.

    A file with bytes past its committed end has its committed bytes proven (CRC-32) before
    anything is cut; one that the next append extends, or cuts, must have no other links.
    """
    chunk = manifest.chunks[-1]
    extended = chunk.appendable and chunk.rows < manifest.chunk_rows
    opened: list[tuple[int, Path, int]] = []
    try:
        for name, width, crc in manifest.chunk_files(chunk):
            file, committed = path / name, chunk.rows * width
            fd = open_committed(file, committed, chunk.rows, os.O_RDWR)
            opened.append((fd, file, committed))
            leftovers = os.fstat(fd).st_size > committed
            if extended or leftovers:
                require_single_link(fd, file)
            if leftovers and not proven:
                require_crc32(fd, committed, crc, file)
    except BaseException:
        for fd, _, _ in opened:
            os.close(fd)
        raise
    return opened


def _unlisted_chunk_files(chunk_dir: Path, manifest: Manifest) -> list[Path]:
    """Files of ``chunk_dir`` past the listed chunks, all proven leftovers; else StoreCorruptedError."""
    count = len(manifest.chunks)
    listed = {Path(name).name for c in manifest.chunks for name, _, _ in manifest.chunk_files(c)}
    if manifest.deleted is not None:
        listed.add(Path(deleted_file(manifest.deleted.generation)).name)
    unlisted = []
    for entry in os.scandir(chunk_dir):
        if entry.name in listed:
            continue  # checked when it was mapped
        match = _CHUNK_NAME.match(entry.name)
        status = entry.stat(follow_symlinks=False)
        if not match or not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            what = describe_kind(status.st_mode) if status.st_nlink == 1 else "hard-linked"
            raise StoreCorruptedError(
                f"{entry.path} is {what}: chunks/ holds only chunk files, and fastquant deletes "
                "only those an interrupted append left; move it away"
            )
        unlisted.append(Path(entry.path))
    last_partial = count > 0 and manifest.chunks[-1].rows < manifest.chunk_rows
    if unlisted and not manifest.checksummed and not last_partial:
        names = ", ".join(sorted(file.name for file in unlisted))
        raise StoreCorruptedError(
            f"{chunk_dir} holds {names}, which the format-1 manifest does not list; it has no "
            "checksum to prove that they are leftovers of an interrupted append rather than "
            "committed rows it lost. If no append was interrupted, restore the manifest; "
            "otherwise move those files away and retry"
        )
    return unlisted
