"""The text index in the corruption fuzzer (``store_fuzz.py``): its files, their damage, its answers.

The pristine store is built by ``index_file`` (30 of a 42-row input, commits of 7 rows, so its
``records/`` holds five files beside ``index.json``, and ``text_index.json`` beside the
manifest). A text probe searches it by text through :class:`~fastquant.texts.TextIndex`
(scores, ids and the records of the hits), verifies it as ``fastquant verify`` does, and resumes
the indexing of the whole input (12 rows more), as ``fastquant index`` would after a crash.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np

INPUT_ROWS = 42
TEMPLATE = "{title}: {body}"
QUERIES = ["doc 3: body 3", "doc 17: body 2", "nothing like it", "doc 29: body 4"]

#: Files of the text index (glob patterns, relative to the store).
FILE_TARGETS = {
    "first records": "records/000000000000-*.arrow",
    "last records": "records/000000000028-*.arrow",
    "index.json": "records/index.json",
    "text marker": "text_index.json",
}
EXTRA_KINDS = {"index.json": ("json", "json resealed", "text"), "text marker": ("json resealed",)}
#: Damage inside ``records/`` (the fuzzer also deletes or replaces the folder itself).
FOLDER_KINDS = {
    "records folder": (
        "stray directory",
        "stray file",
        "stray symlink",
        "leftover",
        "duplicate",
        "temp leftover",
    ),
}
TARGETS = {*FILE_TARGETS, *FOLDER_KINDS}


class FuzzEncoder:
    """Deterministic vectors from each text's CRC (standard normal, like the store's rows)."""

    name = "fuzz-hash"

    def __init__(self, dim: int = 20) -> None:
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = [
            np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts
        ]
        return np.asarray(rows, dtype=np.float32)


def write_input(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = root / "input.parquet"
    titles = [f"doc {i}" for i in range(INPUT_ROWS)]
    bodies = [f"body {i % 5}" for i in range(INPUT_ROWS)]
    pq.write_table(pa.table({"title": titles, "body": bodies}), file, row_group_size=9)
    return file


def index(case_dir: Path, rows: int, *, dim: int, chunk_rows: int, ranges: np.ndarray) -> int:
    """Index rows ``0 .. rows - 1`` of ``case_dir/input.parquet`` into ``case_dir/store`` (or
    resume it there) in commits of ``chunk_rows`` rows; returns the rows the store holds."""
    from fastquant.embed import index_file

    report = index_file(
        case_dir / "input.parquet",
        case_dir / "store",
        template=TEMPLATE,
        model=FuzzEncoder(dim),
        batch_size=chunk_rows,
        calibration_rows=chunk_rows,
        ranges=ranges,
        rows=(0, rows),
        chunk_rows=chunk_rows,
        commit_seconds=0,
        progress=False,
    )
    return report.rows_total


def open_index(store: Path, dim: int):
    from fastquant.texts import TextIndex

    return TextIndex.open(store, encoder=FuzzEncoder(dim))


def answers(text_index) -> dict:
    """What a text probe compares: the row count and each query's hits with their records."""
    out = {"rows": len(text_index)}
    for result in text_index.search(QUERIES, 5):
        out[result.query] = [[hit.id, hit.score, hit.record] for hit in result.hits]
    return out


def verify(store: Path) -> int:
    from fastquant.text_store import verify_store

    return verify_store(store)[0]


# -- damage -------------------------------------------------------------------------------------


def target_file(store: Path, target: str) -> Path:
    (file,) = store.glob(FILE_TARGETS[target]) if "*" in FILE_TARGETS[target] else [None]
    return file or store / FILE_TARGETS[target]


def edit_json(file: Path, resealed: bool, rng, reseal) -> str:
    """One valid-JSON edit of ``index.json`` or ``text_index.json``, its checksum recomputed by
    ``reseal`` if ``resealed``; returns what was done."""
    body = json.loads(file.read_text())
    keys = [key for key in body if key != "json_crc32"]
    value = [-1, 0, 2**70, 1.5, "x", None, [], {}, True, "../../etc/passwd"][int(rng.integers(10))]
    edits = {
        "field value": lambda: body.update({keys[int(rng.integers(len(keys)))]: value}),
        "field deleted": lambda: body.pop(keys[int(rng.integers(len(keys)))]),
        "field added": lambda: body.update(surprise=value),
        "format version": lambda: body.update(format_version=int(rng.choice([-1, 0, 1, 3]))),
    }
    if file.name == "index.json":
        edits |= {
            "model": lambda: body.update(model="wordllama"),
            "dim": lambda: body.update(dim=21),
            "text recipe": lambda: body.update(text={"column": "body"}),
            "columns": lambda: body.update(columns=["body", "title"]),
            "start row": lambda: body.update(start_row=5),
            "source": lambda: body.update(source="/elsewhere/input.parquet"),
        }
    else:
        edits["format"] = lambda: body.update(format="fastquant-corpus-store")
    name = list(edits)[int(rng.integers(len(edits)))]
    edits[name]()
    file.write_text(json.dumps(reseal(body) if resealed else body, indent=1))
    return f"{file.name}: {name}" + (" (checksum recomputed)" if resealed else "")


def damage_folder(store: Path, outside: Path, kind: str, rng) -> str:
    """Add a stranger, a leftover or a copy to ``store/records``; returns what was done (the
    fuzzer deletes or replaces the folder itself)."""
    records = store / "records"
    parts = sorted(records.glob("*.arrow"))
    if kind == "stray directory":
        (records / "000000000030-5-0a0b0c0d.arrow").mkdir()
        return "a directory named like the next records file"
    if kind == "stray file":
        (records / "notes.txt").write_text("mine")
        return "a file records/notes.txt"
    if kind == "stray symlink":
        (records / "000000000030-5-0a0b0c0d.arrow").symlink_to(outside / "decoy.bin")
        return "records/000000000030-5-0a0b0c0d.arrow, a symlink to a file outside"
    if kind == "leftover":
        rows = int(rng.integers(1, INPUT_ROWS - 30 + 1))
        _write_records(store.parent, records, first=30, rows=rows)
        return f"records 30 to {29 + rows} of a commit that never reached the store"
    if kind == "duplicate":
        copy = parts[1].with_name(parts[1].name[:-14] + "0a0b0c0d.arrow")
        copy.write_bytes(parts[1].read_bytes())
        return f"a copy of {parts[1].name} named {copy.name}"
    assert kind == "temp leftover", kind
    (records / ".000000000030-7-0a0b0c0d.arrow.tmp-4242").write_bytes(b"half a records file")
    return "a temp file of an interrupted records write"


def _write_records(case_dir: Path, records: Path, first: int, rows: int) -> None:
    """The records of input rows ``first .. first + rows - 1`` as one records file, as written."""
    import pyarrow.parquet as pq

    from fastquant.records import RecordLog

    scratch = case_dir / "scratch"
    scratch.mkdir()
    batch = pq.read_table(case_dir / "input.parquet").slice(first, rows).to_batches()[0]
    RecordLog(scratch).write(0, batch)
    (made,) = (scratch / "records").glob("*.arrow")
    made.rename(records / made.name.replace(f"{0:012d}", f"{first:012d}", 1))
    shutil.rmtree(scratch)


# -- what a resume may change -----------------------------------------------------------------------


def resume_may_change(name: str, old: tuple | None, new: tuple | None, rows: int) -> bool:
    """May a resume of an index of ``rows`` committed rows change entry ``name`` (of the case
    folder's snapshot) from ``old`` to ``new`` (outside the store's own files)?

    Records files of ids ``rows`` on (written, or deleted as an interrupted run's leftover); temp
    files of records writes (deleted); an unsealed ``index.json`` rewritten sealed with the same
    fields; a missing ``text_index.json`` written. Nothing else.
    """
    parts = Path(name).parts
    if len(parts) == 2 and name == "store/text_index.json":
        return old is None and new is not None and new[0] == "file"
    if len(parts) != 3 or parts[:2] != ("store", "records"):
        return False
    file = parts[2]
    if file == "index.json":
        return _same_fields(old, new)
    if file.startswith(".") and ".arrow.tmp-" in file:
        return old is not None and old[0] == "file" and new is None
    if file.endswith(".arrow") and file[:12].isdigit() and int(file[:12]) >= rows:
        return (old is None and new[0] == "file") or (old[0] == "file" and new is None)
    return False


def _same_fields(old: tuple | None, new: tuple | None) -> bool:
    if old is None or new is None or old[0] != "file" or new[0] != "file":
        return False
    try:
        before, after = json.loads(old[1]), json.loads(new[1])
    except ValueError:
        return False
    drop = ("json_crc32", "format_version")
    return {k: v for k, v in before.items() if k not in drop} == {
        k: v for k, v in after.items() if k not in drop
    }
