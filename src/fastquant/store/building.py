"""Creating a store directory that appears complete or not at all, however many processes race.

A new store is built in a hidden folder beside its final path, ``.NAME.creating-PID-XXXX``,
which the builder keeps locked (``writer.lock`` inside it) and renames into place when done.
``rename`` cannot replace a non-empty directory, so of several processes creating the same
store exactly one succeeds; the others get ``FileExistsError`` and remove their folders.

A builder that died (SIGKILL, power loss) leaves its folder behind. The next ``create`` of the
same name removes such a folder when its lock is free *and* the pid in its name is not running:
the lock proves nobody builds there (whatever pid namespace it runs in), and the pid covers the
moment between making the folder and locking it. A pid reused by an unrelated process only
delays the cleanup until that process ends; a live builder's folder is never removed.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError
from .lock import WriterLock
from .safe_files import fsync_directory


@contextmanager
def building_directory(path: Path) -> Iterator[Path]:
    """A new locked folder to build the store at ``path`` in; renamed to ``path`` after the block.

    Raises ``FileExistsError`` when ``path`` exists and is not an empty directory, also when
    another process created a store there first. On any error the folder is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(path)
    building: Path | None = _new_folder(path)
    lock = None
    try:
        lock = WriterLock(building)
        yield building
        try:
            os.rename(building, path)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            raise FileExistsError(
                f"cannot create a store at {path}: it exists and is not an empty directory "
                "(another process may have created it first)"
            ) from None
        building = None
        fsync_directory(path.parent)
    finally:
        if lock is not None:
            lock.release()
        if building is not None:
            shutil.rmtree(building, ignore_errors=True)


def _new_folder(path: Path) -> Path:
    """A new empty folder ``.NAME.creating-PID-RANDOM`` beside ``path`` (mode as ``mkdir`` makes it)."""
    while True:
        folder = path.with_name(f".{path.name}.creating-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def remove_stale_builds(path: Path) -> list[Path]:
    """Remove the build folders of ``path`` left by dead processes (see the module docstring)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.creating-(\d+)(-.*)?$")
    removed = []
    for entry in os.scandir(path.parent):
        match = pattern.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or _running(int(match[1])):
            continue
        folder = Path(entry.path)
        try:
            lock = WriterLock(folder)
        except (StoreError, OSError):
            continue  # locked: a builder is alive (in another pid namespace); or not ours to judge
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            lock.release()
        removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # alive but not ours to signal, or not a pid at all: leave it
    return True
