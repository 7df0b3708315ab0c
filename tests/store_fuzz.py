"""A seeded corruption fuzzer for ``CorpusStore``: damage one store file, probe the store, judge.

Each case copies a pristine store (30 rows of 20-d in five chunks of 7, the last one partial,
indexed from a file by ``index_file``: its ``records/``, ``index.json`` and ``text_index.json``
too), damages one thing (a byte flip, a cut, an extension, a deletion; a directory, FIFO, symlink
or hard link in place of a file; a stranger in ``chunks/`` or ``records/``; valid JSON with wrong
values, with or without a matching checksum) and runs a probe in a child process forked from a
warm fork server, killed after a timeout. ``hot`` probes open the store before the damage and
search it after, then ``refresh``; every probe then opens it, searches (every rescoring mode and
``exact_search``), verifies and appends. Damage to the text index is probed through the text
index instead (``fuzz_text.py``): searches by text with the hits' records, ``fastquant
verify``'s check, and a resumed ``index_file`` as the append. Outcomes:

- good: ``refused`` (a fastquant ``StoreError``, or ``InputError`` for a text index refusing
  other settings), ``pristine`` (the pristine answers),
  ``verify caught`` (changed answers, and ``verify()`` says the store is damaged);
- bad: ``hang``, ``signal``, ``crash`` (the probe died without a verdict), ``wrong error`` (an
  exception that is not a ``StoreError``), ``silent change`` (changed answers that ``verify()``
  misses), ``reader wrote`` (a read changed a byte), ``destroyed`` (an append changed a byte
  outside what it committed: every byte of every file in and around the store is compared),
  ``append broke`` (a store that verified before an append fails after it).

Used by ``tests/test_fuzz_store.py`` (about a hundred cases, every kind on several targets) and
``benchmarks/fuzz_store.py`` (random cases and the outcome table). Run it directly:
``python tests/store_fuzz.py --mutations 500 --seed 1``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import stat
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import fuzz_text

DIM, CHUNK_ROWS, ROWS, APPEND_ROWS = 20, 7, 30, 12
CHUNKS = -(-ROWS // CHUNK_ROWS)
BITS_WIDTH = (DIM + 7) // 8
#: Bytes per row of a chunk's factors file (two bfloat16).
FACTOR_BYTES = 4
TIMEOUT_S = 20.0
MEMORY_LIMIT_BYTES = 4 << 30

#: What a case can damage: a name and the path in the store.
FILE_TARGETS = {
    "manifest": "manifest.json",
    "calibration": "calibration.npy",
    "centre": "centre.npy",
    "first bits": "chunks/000000.bits",
    "first codes": "chunks/000000.codes",
    "first factors": "chunks/000000.factors",
    "middle bits": "chunks/000002.bits",
    "middle codes": "chunks/000002.codes",
    "middle factors": "chunks/000002.factors",
    "last bits": "chunks/000004.bits",
    "last codes": "chunks/000004.codes",
    "last factors": "chunks/000004.factors",
    "compacted bits": "chunks/000001.g1.bits",
    "compacted ids": "chunks/000001.g1.ids",
    "deleted ids": "chunks/deleted-000001.ids",
    "writer lock": "writer.lock",
}
#: Ids the pristine store deletes and compacts away (chunk 1), then deletes (chunk 2).
COMPACTED_IDS, DELETED_IDS = [8, 9], [15, 20]
FILE_KINDS = (
    "flip",
    "truncate",
    "extend",
    "delete",
    "directory",
    "fifo",
    "symlink inside",
    "symlink outside",
    "symlink device",
    "symlink dangling",
    "hardlink outside",
)
EXTRA_KINDS = {
    "manifest": ("json", "json resealed", "text"),
    "calibration": ("npy resealed",),
}
#: What a folder target can suffer as a whole (``_replace_folder``), before its own kinds.
REPLACED_FOLDER = ("delete", "file", "symlink outside")
FOLDER_KINDS = {
    "chunks folder": (
        *REPLACED_FOLDER,
        "stray directory",
        "stray file",
        "stray symlink",
        "leftover",
    ),
    "store folder": ("temp leftover", "temp symlink", "stray file"),
}
GOOD = ("refused", "pristine", "verify caught")
BAD = (
    "hang",
    "signal",
    "crash",
    "wrong error",
    "silent change",
    "reader wrote",
    "destroyed",
    "append broke",
)


@dataclass(frozen=True)
class Case:
    """One mutation: what to damage, how, with which seed, and whether the store is open first."""

    target: str
    kind: str
    seed: int
    hot: bool


#: The folder that each folder target deletes or replaces as a whole.
FOLDERS = {"chunks folder": "chunks", "records folder": "records"}
#: Every file target: the store's and its text index's.
ALL_FILE_TARGETS = {**FILE_TARGETS, **fuzz_text.FILE_TARGETS}
ALL_EXTRA_KINDS = {**EXTRA_KINDS, **fuzz_text.EXTRA_KINDS}
ALL_FOLDER_KINDS = {
    **FOLDER_KINDS,
    **{target: (*REPLACED_FOLDER, *kinds) for target, kinds in fuzz_text.FOLDER_KINDS.items()},
}
#: In the CI set, each kind of file damage hits this many store files and text index files.
STORE_FILES_PER_KIND, TEXT_FILES_PER_KIND = 4, 2


def every_target_and_kind(seed: int) -> list[Case]:
    """Every kind of damage on several targets, every target with several kinds: about 100 cases.

    Each file kind hits :data:`STORE_FILES_PER_KIND` store files and
    :data:`TEXT_FILES_PER_KIND` files of the text index, in rotation (the seed turns it); each
    JSON kind twice per JSON file, each folder kind once. The middle chunk's files are left to
    the random runs: the first and last ones cover chunks that an append leaves and extends.
    """
    store_files = [target for target in FILE_TARGETS if not target.startswith("middle")]
    text_files = list(fuzz_text.FILE_TARGETS)
    pairs = []
    for i, kind in enumerate(FILE_KINDS):
        for files, count in (
            (store_files, STORE_FILES_PER_KIND),
            (text_files, TEXT_FILES_PER_KIND),
        ):
            start = (seed + i * count) % len(files)
            pairs += [(files[(start + j) % len(files)], kind) for j in range(count)]
    for target, kinds in ALL_EXTRA_KINDS.items():
        pairs += [(target, kind) for kind in kinds for _ in range(2 if "json" in kind else 1)]
    pairs += [(target, kind) for target, kinds in ALL_FOLDER_KINDS.items() for kind in kinds]
    return [Case(t, k, seed * 100_003 + i, i % 2 == 1) for i, (t, k) in enumerate(pairs)]


def random_cases(seed: int, count: int) -> list[Case]:
    """``count`` cases drawn at random over targets and kinds (JSON kinds weighted up)."""
    rng = np.random.default_rng(seed)
    pairs = [(target, kind) for target in ALL_FILE_TARGETS for kind in FILE_KINDS]
    pairs += [(t, k) for t, kinds in ALL_EXTRA_KINDS.items() for k in kinds for _ in range(6)]
    pairs += [(t, k) for t, kinds in ALL_FOLDER_KINDS.items() for k in kinds]
    picks = rng.integers(0, len(pairs), count)
    return [
        Case(*pairs[p], seed=int(rng.integers(1 << 62)), hot=bool(rng.integers(2))) for p in picks
    ]


# -- the pristine store -----------------------------------------------------------------------


def queries() -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((4, DIM)).astype(np.float32)


RANGES = np.vstack([np.full(DIM, -2.5, np.float32), np.full(DIM, 2.5, np.float32)])


def index_text(case_dir: Path, rows: int) -> int:
    """Index (or resume indexing) the first ``rows`` rows of the input into ``case_dir/store``."""
    return fuzz_text.index(case_dir, rows, dim=DIM, chunk_rows=CHUNK_ROWS, ranges=RANGES)


def build_template(root: Path) -> Path:
    """The pristine store at ``root/store``, indexed from ``root/input.parquet`` with its text
    index (plus ``root/outside/decoy.bin``); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    fuzz_text.write_input(root)
    index_text(root, ROWS)
    from fastquant import CorpusStore

    with CorpusStore.open(root / "store") as store:  # a compacted chunk and a list of deleted ids
        store.delete(COMPACTED_IDS)
        store.compact()
        store.delete(DELETED_IDS)
    (root / "outside").mkdir()
    (root / "outside" / "decoy.bin").write_bytes(bytes(range(256)) * 8)
    return root


def answers(store) -> dict:
    """Everything the probe compares: the length and every search mode's scores and ids."""
    q = queries()
    out = {"rows": len(store)}
    for mode in ("int8", "bits", "none"):
        scores, ids = store.search(q, 5, rescore=mode)
        out[mode] = [scores.tolist(), ids.tolist()]
    scores, ids = store.exact_search(q, ROWS + 5)
    out["exact"] = [scores.tolist(), ids.tolist()]
    return out


# -- damage -------------------------------------------------------------------------------------


def damage(case_dir: Path, case: Case) -> str:
    """Apply ``case`` to the copy of the store in ``case_dir``; returns what was done."""
    rng = np.random.default_rng(case.seed)
    store, outside = case_dir / "store", case_dir / "outside"
    if case.target in FOLDERS and case.kind in REPLACED_FOLDER:
        return _replace_folder(store / FOLDERS[case.target], outside, case.kind)
    if case.target in fuzz_text.FOLDER_KINDS:
        return fuzz_text.damage_folder(store, outside, case.kind, rng)
    if case.target in FOLDER_KINDS:
        return _damage_folder(store, outside, case.target, case.kind, rng)
    if case.target in fuzz_text.FILE_TARGETS:
        file = fuzz_text.target_file(store, case.target)
        if case.kind in ("json", "json resealed"):
            return fuzz_text.edit_json(file, case.kind == "json resealed", rng, reseal)
    else:
        file = store / FILE_TARGETS[case.target]
    if case.kind in ("json", "json resealed", "text"):
        return _damage_manifest(file, case.kind, rng)
    if case.kind == "npy resealed":
        return _damage_calibration(store, rng)
    return _damage_file(store, outside, file, case.kind, rng)


def _replace_folder(folder: Path, outside: Path, kind: str) -> str:
    """Delete ``folder``, or put a file or a symlink to an identical copy outside in its place."""
    if kind == "symlink outside":
        shutil.copytree(folder, outside / folder.name)
    shutil.rmtree(folder)
    if kind == "delete":
        return f"{folder.name}/ deleted"
    if kind == "file":
        folder.write_bytes(b"not a folder")
        return f"{folder.name}/ replaced by a file"
    assert kind == "symlink outside", kind
    folder.symlink_to(outside / folder.name)
    return f"{folder.name}/ replaced by a symlink to an identical copy outside"


def _damage_file(store: Path, outside: Path, file: Path, kind: str, rng) -> str:
    data = file.read_bytes()
    if kind == "flip":
        offsets = rng.integers(0, max(1, len(data)), int(rng.integers(1, 4)))
        edited = bytearray(data)
        for offset in offsets:
            if offset < len(edited):
                edited[offset] ^= int(rng.integers(1, 256))
        file.write_bytes(bytes(edited))
        return f"flipped bytes at {sorted(set(offsets.tolist()))} of {len(data)}"
    if kind == "truncate":
        size = int(rng.choice([0, max(0, len(data) - 1), int(rng.integers(0, max(1, len(data))))]))
        os.truncate(file, size)
        return f"cut from {len(data)} to {size} bytes"
    if kind == "extend":
        extra = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
        with open(file, "ab") as handle:
            handle.write(extra)
        return f"extended by {len(extra)} bytes"
    file.unlink()
    if kind == "delete":
        return "deleted"
    if kind == "directory":
        file.mkdir()
        if rng.integers(2):
            (file / "inner").write_bytes(data)
        return "replaced by a directory"
    if kind == "fifo":
        os.mkfifo(file)
        return "replaced by a FIFO"
    if kind == "symlink inside":
        others = sorted(p for p in store.rglob("*") if p.is_file() and p != file)
        target = others[int(rng.integers(len(others)))]
        file.symlink_to(target)
        return f"replaced by a symlink to {target.relative_to(store)}"
    if kind == "symlink device":
        device = str(rng.choice(["/dev/zero", "/dev/null", "/dev/urandom"]))
        file.symlink_to(device)
        return f"replaced by a symlink to {device}"
    if kind == "symlink dangling":
        file.symlink_to(outside / "nothing-here")
        return "replaced by a dangling symlink"
    copy = outside / file.name
    copy.write_bytes(data)
    if kind == "symlink outside":
        file.symlink_to(copy)
        return "replaced by a symlink to an identical copy outside the store"
    assert kind == "hardlink outside", kind
    os.link(copy, file)
    return "replaced by a hard link to an identical file outside the store"


def _damage_folder(store: Path, outside: Path, target: str, kind: str, rng) -> str:
    chunks = store / "chunks"
    if target == "store folder":
        if kind == "temp leftover":
            (store / ".manifest.json.tmp-4242").write_text('{"half a manifest')
            return "a temp file of an interrupted manifest write"
        if kind == "temp symlink":
            (store / ".calibration.npy.tmp-4242").symlink_to(outside / "decoy.bin")
            return "a symlink named like a calibration temp file, to a file outside"
        (store / "notes.txt").write_text("mine")
        return "a file of the user's in the store folder"
    name = f"{int(rng.choice([4, 5, 9])):06d}.{rng.choice(['bits', 'codes'])}"
    if kind == "stray directory":
        name = name if not name.startswith("000004") else "000009.bits"
        (chunks / name).mkdir()
        return f"a directory chunks/{name}"
    if kind == "stray file":
        (chunks / "notes.txt").write_text("mine")
        return "a file chunks/notes.txt"
    if kind == "stray symlink":
        (chunks / "000005.codes").symlink_to(outside / "decoy.bin")
        return "chunks/000005.codes, a symlink to a file outside"
    assert kind == "leftover", kind
    for suffix in ("bits", "codes"):
        size = int(rng.integers(1, 200))
        (chunks / f"000005.{suffix}").write_bytes(rng.integers(0, 256, size, np.uint8).tobytes())
    return "chunks/000005.* left by an interrupted append"


def reseal(body: dict) -> dict:
    """``body`` with a ``json_crc32`` that matches it, as ``docs/store_format.md`` defines it."""
    body = {key: value for key, value in body.items() if key != "json_crc32"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {**body, "json_crc32": zlib.crc32(text.encode())}


#: Values that no manifest field may hold.
BAD_VALUES = [-1, 0, 2**70, 1.5, "x", None, [], {}, True, "../../etc/passwd"]


def _edit_json(body: dict, rng, resealed: bool) -> str:
    """One valid-JSON edit of a parsed manifest; those a checksum cannot tell from a valid older
    state (dropping the last chunk with the rows to match) are made only without resealing."""
    edits = [
        "field value",
        "field deleted",
        "field added",
        "chunk field",
        "last rows lowered",
        "chunks swapped",
        "chunk path",
        "format version",
        "bits width",
        "dim",
        "calibration source",
        "chunk crc",
    ] + ([] if resealed else ["last chunk dropped"])
    edit = edits[int(rng.integers(len(edits)))]
    keys = [key for key in body if key != "json_crc32"]
    chunk = body["chunks"][int(rng.integers(len(body["chunks"])))]
    value = BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
    if edit == "field value":
        key = keys[int(rng.integers(len(keys)))]
        body[key] = value
        return f"{key} = {value!r}"
    if edit == "field deleted":
        key = keys[int(rng.integers(len(keys)))]
        del body[key]
        return f"{key} deleted"
    if edit == "field added":
        body["surprise"] = value
        return "an unknown field"
    if edit == "chunk field":
        key = str(rng.choice(["bits", "codes", "rows", "bits_crc32", "codes_crc32"]))
        chunk[key] = value
        return f"a chunk's {key} = {value!r}"
    if edit == "last rows lowered":
        body["chunks"][-1]["rows"] -= 1
        body["rows"] -= 1
        body["next_id"] -= 1  # the ids end with the rows, as before a lost append
        return "the last chunk's rows, the total and next_id lowered by one"
    if edit == "chunks swapped":
        body["chunks"][0], body["chunks"][1] = body["chunks"][1], body["chunks"][0]
        return "two chunk records swapped"
    if edit == "chunk path":
        chunk["codes"] = str(rng.choice(["../../etc/passwd", "../outside/decoy.bin"]))
        return f"a chunk path = {chunk['codes']!r}"
    if edit == "format version":
        body["format_version"] = int(rng.choice([-1, 0, 1, 3]))
        return f"format_version = {body['format_version']}"
    if edit == "bits width":
        body["bits_width"] = int(rng.choice([-1, 0, BITS_WIDTH + 1]))
        return f"bits_width = {body['bits_width']}"
    if edit == "dim":
        body["dim"] = DIM + int(rng.choice([-1, 1]))
        body["bits_width"] = (body["dim"] + 7) // 8
        return f"dim = {body['dim']} (bits_width to match)"
    if edit == "calibration source":
        body["calibration_source"] = "edited"
        return "calibration_source edited"
    if edit == "chunk crc":
        chunk["codes_crc32"] ^= 1
        return "a chunk's codes_crc32 changed"
    del body["chunks"][-1]
    body["rows"] = sum(chunk["rows"] for chunk in body["chunks"])
    body["next_id"] = body["chunks"][-1]["first_id"] + body["chunks"][-1]["rows"]
    return "the last chunk dropped, rows and next_id to match"


def _damage_manifest(file: Path, kind: str, rng) -> str:
    text = file.read_text()
    if kind == "text":
        edits = {
            "a byte that is not UTF-8": lambda t: t[:40] + "\udcff" + t[40:],
            "a duplicated key": lambda t: t.replace('"dim": 20', '"dim": 20, "dim": 20', 1),
            "NaN for a checksum": lambda t: t.replace('"json_crc32": ', '"json_crc32": NaN, "x": '),
            "trailing garbage": lambda t: t + "}]garbage",
            "a byte-order mark": lambda t: "\ufeff" + t,
            "100,000 nested arrays": lambda t: (
                t[:-2] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
            ),
            "emptied": lambda t: "",
        }
        name = list(edits)[int(rng.integers(len(edits)))]
        file.write_bytes(edits[name](text).encode(errors="surrogateescape"))
        return name
    body = json.loads(text)
    what = _edit_json(body, rng, kind == "json resealed")
    if kind == "json resealed":
        body = reseal(body)
    file.write_text(json.dumps(body, indent=1))
    return what + (" (checksum recomputed)" if kind == "json resealed" else "")


def _damage_calibration(store: Path, rng) -> str:
    ranges = np.vstack([np.full(DIM, -2.5, np.float32), np.full(DIM, 2.5, np.float32)])
    variants = {
        "minima above maxima": ranges[::-1].copy(),
        "dimension 21": np.hstack([ranges, ranges[:, :1]]),
        "three rows": np.vstack([ranges, ranges[:1]]),
        "NaN ranges": np.full((2, DIM), np.nan, np.float32),
        "integer ranges": ranges.astype(np.int32),
        "a scalar": np.float32(1.0),
    }
    name = list(variants)[int(rng.integers(len(variants)))]
    file = store / "calibration.npy"
    np.save(file, variants[name])
    body = json.loads((store / "manifest.json").read_text())
    body["calibration_crc32"] = zlib.crc32(file.read_bytes())
    (store / "manifest.json").write_text(json.dumps(reseal(body), indent=1))
    return f"calibration.npy holds {name} (its CRC and the manifest's checksum recomputed)"


# -- the probe (runs in a child process) -----------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` without following anything: bytes, link targets, kinds.

    Files over 16 MiB (sparse giants made by tests) are described by size and mtime.
    """
    tree: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            status = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(status.st_mode):
                tree[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(status.st_mode) and status.st_size > 1 << 24:
                tree[key] = ("big", status.st_size, status.st_mtime_ns)
            elif stat.S_ISREG(status.st_mode):
                tree[key] = ("file", path.read_bytes())
            else:
                tree[key] = ("other", stat.S_IFMT(status.st_mode))
    return tree


def _stage(call: Callable[[], object]) -> dict:
    from fastquant import StoreError
    from fastquant.sources import InputError

    started = time.perf_counter()
    try:
        stage = {"value": call()}
    except (StoreError, InputError) as error:
        stage = {"error": type(error).__name__, "message": str(error)[:300], "fastquant": True}
    except Exception as error:  # judged "wrong error"
        stage = {
            "error": type(error).__name__,
            "message": f"{error}"[:300],
            "fastquant": False,
            "trace": traceback.format_exc()[-1500:],
        }
    return {**stage, "seconds": time.perf_counter() - started}


def probe(case_dir: Path, case: Case, result_file: Path) -> None:
    """Damage the store in ``case_dir`` as ``case`` says, use it, write the verdict's facts.

    Memory is capped, so that reading a device without end fails here, not on the machine.
    """
    from fastquant import CorpusStore

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    if case.target in fuzz_text.TARGETS:
        result_file.write_text(json.dumps(_probe_text(case_dir, case)))
        return
    store_path = case_dir / "store"
    stages: dict[str, dict] = {}
    held = CorpusStore.open(store_path) if case.hot else None
    description = damage(case_dir, case)
    before_reads = snapshot(case_dir)
    if held is not None:
        stages["held"] = _stage(lambda: answers(held))
        stages["refreshed"] = _stage(lambda: (held.refresh(), answers(held))[1])
    stages["opened"] = _stage(lambda: answers(CorpusStore.open(store_path)))
    stages["verify"] = _stage(lambda: CorpusStore.open(store_path).verify())
    after_reads = snapshot(case_dir)
    batch = np.random.default_rng(7).standard_normal((APPEND_ROWS, DIM)).astype(np.float32)

    def append() -> int:
        with CorpusStore.open(store_path) as writer:
            writer.append(batch)
            return len(writer)

    stages["append"] = _stage(append)
    after_append = snapshot(case_dir)
    appended = "value" in stages["append"]
    if appended:
        stages["after append"] = _stage(
            lambda: (len(CorpusStore.open(store_path)), CorpusStore.open(store_path).verify())
        )
    facts = {
        "description": description,
        "stages": stages,
        "reader_wrote": sorted(_differences(before_reads, after_reads, lambda *_: False)),
        "destroyed": sorted(
            _differences(after_reads, after_append, lambda *a: _append_may_change(*a, appended))
        ),
    }
    result_file.write_text(json.dumps(facts))


def _probe_text(case_dir: Path, case: Case) -> dict:
    """:func:`probe` of damage to the text index: searches by text (a ``hot`` probe maps the
    records before the damage), ``fastquant verify``'s check, and a resumed index of all the
    input as the append. Returns the verdict's facts."""
    store_path = case_dir / "store"
    stages: dict[str, dict] = {}
    held = fuzz_text.open_index(store_path, DIM) if case.hot else None
    if held is not None:
        fuzz_text.answers(held)
    description = damage(case_dir, case)
    before_reads = snapshot(case_dir)
    if held is not None:
        stages["held"] = _stage(lambda: fuzz_text.answers(held))

        def refreshed() -> dict:
            held.store.refresh()
            held.records.reload()
            return fuzz_text.answers(held)

        stages["refreshed"] = _stage(refreshed)
    stages["opened"] = _stage(lambda: fuzz_text.answers(fuzz_text.open_index(store_path, DIM)))
    stages["verify"] = _stage(lambda: fuzz_text.verify(store_path))
    after_reads = snapshot(case_dir)
    stages["append"] = _stage(lambda: index_text(case_dir, fuzz_text.INPUT_ROWS))
    after_append = snapshot(case_dir)
    appended = "value" in stages["append"]
    if appended:
        stages["after append"] = _stage(lambda: fuzz_text.verify(store_path))

    def may_change(name: str, old: tuple | None, new: tuple | None) -> bool:
        return _append_may_change(name, old, new, appended) or fuzz_text.resume_may_change(
            name, old, new, ROWS
        )

    return {
        "description": description,
        "stages": stages,
        "reader_wrote": sorted(_differences(before_reads, after_reads, lambda *_: False)),
        "destroyed": sorted(_differences(after_reads, after_append, may_change)),
    }


def _differences(before: dict, after: dict, allowed: Callable[..., bool]) -> list[str]:
    return [
        name
        for name in before.keys() | after.keys()
        if before.get(name) != after.get(name)
        and not allowed(name, before.get(name), after.get(name))
    ]


def _append_may_change(name: str, old: tuple | None, new: tuple | None, appended: bool) -> bool:
    """May an append (``appended``: that committed) change entry ``name`` from ``old`` to ``new``?

    The manifest (if it committed) and the lock file; the writer's own temp files (deleted);
    the committed chunks only past their committed bytes (pristine sizes); chunk files past the
    committed ones when they are regular files or new. Nothing else, in or outside the store.
    """
    parts = Path(name).parts
    if parts[0] != "store":
        return False
    if name == "store/manifest.json":
        return appended
    if name == "store/writer.lock":
        return True
    temps = (".manifest.json.tmp-", ".calibration.npy.tmp-", ".centre.npy.tmp-")
    if len(parts) == 2 and parts[1].startswith(temps):
        return old is not None and old[0] == "file" and new is None
    if len(parts) != 3 or parts[1] != "chunks" or not parts[2][:6].isdigit():
        return False
    index, suffix = int(parts[2][:6]), parts[2].rsplit(".", 1)[-1]
    if index >= CHUNKS:  # never committed: leftovers (regular files) and new chunks
        return (old is None and appended) or (old is not None and old[0] == "file")
    if old is None or old[0] != "file" or new is None or new[0] != "file":
        return False
    rows = CHUNK_ROWS if index < CHUNKS - 1 else ROWS - (CHUNKS - 1) * CHUNK_ROWS
    committed = rows * {"bits": BITS_WIDTH, "codes": DIM, "factors": FACTOR_BYTES}.get(suffix, 0)
    return old[1][:committed] == new[1][:committed] and len(new[1]) >= min(len(old[1]), committed)


# -- verdicts -------------------------------------------------------------------------------------


def verdict(facts: dict | None, exitcode: int | None, pristine: dict) -> tuple[str, str]:
    """``(outcome, append outcome)`` of one probe; see the module docstring."""
    if exitcode is None:
        return "hang", "-"
    if exitcode < 0:
        return "signal", "-"
    if facts is None:
        return "crash", "-"
    stages = facts["stages"]
    append = "appended" if "value" in stages["append"] else "append refused"
    if any(stage.get("fastquant") is False for stage in stages.values()):
        return "wrong error", append
    if facts["reader_wrote"]:
        return "reader wrote", append
    if facts["destroyed"]:
        return "destroyed", append
    verified = "value" in stages["verify"]
    if verified and "after append" in stages and "error" in stages["after append"]:
        return "append broke", append
    searched = [stages[name] for name in ("held", "refreshed", "opened") if name in stages]
    changed = any("value" in stage and stage["value"] != pristine for stage in searched)
    if changed:
        return ("silent change" if verified else "verify caught"), append
    if any("error" in stage for stage in searched):
        return "refused", append
    return "pristine", append


# -- running many cases ---------------------------------------------------------------------------


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["numpy", "pyarrow.parquet", "fastquant.embed", "fastquant.texts", "store_fuzz"]
    )
    return context


def run(cases: list[Case], *, workers: int = 2, timeout: float = TIMEOUT_S) -> list[dict]:
    """Run every case in its own child process; returns one record per case, in order.

    Stores live in ``/dev/shm`` when it exists: the cases test what is read and written, not
    durability, and a tmpfs makes the appends' fsyncs free.
    """
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="fastquant-fuzz-", dir=shm) as scratch:
        root = Path(scratch)
        template = build_template(root / "template")
        from fastquant import CorpusStore

        pristine_store = json.loads(json.dumps(answers(CorpusStore.open(template / "store"))))
        with fuzz_text.open_index(template / "store", DIM) as text_index:
            pristine_text = json.loads(json.dumps(fuzz_text.answers(text_index)))
        context = _context()

        def one(index: int) -> dict:
            case = cases[index]
            case_dir = root / f"case{index}"
            shutil.copytree(template, case_dir, symlinks=True)
            result = case_dir.parent / f"case{index}.json"
            child = context.Process(target=probe, args=(case_dir, case, result))
            started = time.perf_counter()
            child.start()
            child.join(timeout)
            if child.is_alive():
                child.kill()
                child.join()
                exitcode = None
            else:
                exitcode = child.exitcode
            seconds = time.perf_counter() - started
            facts = json.loads(result.read_text()) if result.exists() else None
            pristine = pristine_text if case.target in fuzz_text.TARGETS else pristine_store
            outcome, append = verdict(facts, exitcode, pristine)
            shutil.rmtree(case_dir, ignore_errors=True)
            return {
                **asdict(case),
                "outcome": outcome,
                "append": append,
                "seconds": round(seconds, 3),
                "exitcode": exitcode,
                **_brief(facts, pristine),
            }

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, range(len(cases))))


def _brief(facts: dict | None, pristine: dict) -> dict:
    """What a record keeps of a probe's facts: the damage, and each stage as one line."""
    if facts is None:
        return {"description": None, "stages": {}}
    stages = {}
    for name, stage in facts["stages"].items():
        if "error" in stage:
            stages[name] = f"{stage['error']}: {stage['message']}"
        elif name in ("held", "refreshed", "opened"):
            stages[name] = "pristine answers" if stage["value"] == pristine else "changed answers"
        else:
            stages[name] = f"ok: {stage['value']}"
    refusals = [stage["seconds"] for stage in facts["stages"].values() if "error" in stage]
    brief = {"description": facts["description"], "stages": stages}
    if refusals:
        brief["slowest_refusal_s"] = round(max(refusals), 4)
    for key in ("reader_wrote", "destroyed"):
        if facts[key]:
            brief[key] = facts[key]
    return brief


def table(records: list[dict], by: str = "kind") -> str:
    """The outcome table: one row per ``kind`` (or ``target``), counts of each outcome."""
    columns = list(GOOD) + ["appended", "append refused"] + list(BAD)
    groups: dict[str, Counter] = {}
    for record in records:
        counts = groups.setdefault(record[by], Counter())
        counts[record["outcome"]] += 1
        counts[record["append"]] += 1
        counts["cases"] += 1
    total = sum(groups.values(), Counter())
    width = max(len(name) for name in [*groups, "total"]) + 2
    header = f"{by:<{width}}{'cases':>6}" + "".join(f"{c:>{max(len(c), 4) + 2}}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, counts in [*sorted(groups.items()), ("total", total)]:
        cells = "".join(f"{counts[c]:>{max(len(c), 4) + 2}}" for c in columns)
        lines.append(f"{name:<{width}}{counts['cases']:>6}{cells}")
    return "\n".join(lines)


def summary(records: list[dict]) -> dict:
    """Counts of every outcome, the slowest probe, and the cases with a bad outcome."""
    counts = Counter(record["outcome"] for record in records)
    counts.update(record["append"] for record in records)
    return {
        "cases": len(records),
        "outcomes": {name: counts[name] for name in (*GOOD, "appended", "append refused", *BAD)},
        "slowest_probe_s": max((record["seconds"] for record in records), default=0.0),
        "slowest_refusal_s": max(
            (record.get("slowest_refusal_s", 0.0) for record in records), default=0.0
        ),
        "bad": [record for record in records if record["outcome"] in BAD],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--mutations",
        type=int,
        default=None,
        help="random cases (default: each target and kind once)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--json", type=Path, default=None, help="write every case's record here")
    args = parser.parse_args(argv)
    if args.mutations is None:
        cases = every_target_and_kind(args.seed)
    else:
        cases = random_cases(args.seed, args.mutations)
    started = time.perf_counter()
    records = run(cases, workers=args.workers, timeout=args.timeout)
    result = {
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
        **summary(records),
        "records": records,
    }
    print(table(records, "kind"))
    print()
    print(table(records, "target"))
    print(
        f"\n{len(records)} cases in {result['seconds']} s; slowest probe "
        f"{result['slowest_probe_s']} s (all its stages); slowest refusal "
        f"{result['slowest_refusal_s']} s (one open, search, verify or append raising)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    # Run as the module ``store_fuzz``, which the fork server and its children import by name.
    sys.path.insert(0, str(Path(__file__).parent))
    import store_fuzz

    store_fuzz.main()
