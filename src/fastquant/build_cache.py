"""Folders built once per key and reused: atomic, safe for concurrent builders, checked on use.

``cached_folder(root, name, key, build)`` returns ``root/<name>-<digest of key>/``, built by
``build(temp_folder)`` the first time. The folder name carries the key, so a folder built from
something else (an older model package, another onnxruntime, another quantization) is never
reused. The build writes into a temporary folder that is renamed into place only once complete,
with a ``manifest.json`` holding the key and every file's size and SHA-256; each use re-reads the
manifest and re-hashes the files, and a folder that fails the check is rebuilt. A blocking
``flock`` on ``root/.<folder>.lock`` lets one process build while the others wait and then reuse
its result; the kernel drops the lock when a builder dies, and its leftover temporary folder is
removed by the next builder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .store.safe_files import fsync_directory

MANIFEST = "manifest.json"
_FORMAT = 1
_CHUNK = 1 << 20


def cached_folder(
    root: Path,
    name: str,
    key: dict[str, Any],
    build: Callable[[Path], None],
    *,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``root/<name>-<digest>``, built now by ``build(folder)`` unless a sound copy exists.

    ``key`` (JSON-serializable) says what the folder is built from. ``build`` fills the empty
    folder it is given; an exception from it leaves nothing behind. ``log`` hears about builds.
    """
    folder = root / f"{name}-{key_digest(key)}"
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{folder.name}.lock"):
        problem = folder_problem(folder, key)
        if problem is None:
            return folder
        if folder.exists():
            if log:
                log(f"{folder} is damaged ({problem}); building it again")
            shutil.rmtree(folder)
        for leftover in root.glob(f".{folder.name}.tmp-*"):  # from a builder that died
            shutil.rmtree(leftover, ignore_errors=True)
        temp = root / f".{folder.name}.tmp-{os.getpid()}"
        temp.mkdir()
        try:
            build(temp)
            _write_manifest(temp, key)
            os.rename(temp, folder)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_directory(root)
    return folder


def key_digest(key: dict[str, Any]) -> str:
    """12 hex digits that change with anything in ``key``."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def folder_problem(folder: Path, key: dict[str, Any]) -> str | None:
    """Why ``folder`` is not a sound build of ``key`` (missing, altered, truncated), or None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "missing" if not folder.exists() else f"no {MANIFEST}"
    except (OSError, ValueError) as error:
        return f"unreadable {MANIFEST}: {error}"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return f"{MANIFEST} describes another build"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return f"{MANIFEST} lists no files"
    for file_name, expected in files.items():
        file = folder / file_name
        try:
            size = file.stat().st_size
        except OSError:
            return f"{file_name} is missing"
        if size != expected.get("bytes"):
            return f"{file_name} holds {size} bytes, not {expected.get('bytes')}"
        if _sha256(file) != expected.get("sha256"):
            return f"{file_name} fails its SHA-256 check"
    return None


def _write_manifest(folder: Path, key: dict[str, Any]) -> None:
    """Flush every file ``build`` wrote, then describe them in ``MANIFEST``."""
    files = {}
    for file in sorted(folder.iterdir()):
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
        files[file.name] = {"bytes": file.stat().st_size, "sha256": _sha256(file)}
    manifest = {"format": _FORMAT, "key": key, "files": files}
    with open(folder / MANIFEST, "w") as handle:
        handle.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_directory(folder)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (waiting for it) for the ``with`` block."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock
