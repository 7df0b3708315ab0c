"""Re-indexing a changed input by its key column against a full rebuild.

Usage::

    python benchmarks/reindex.py            # minilm-onnx-int8 on the 11,825 bundled medicines
    python benchmarks/reindex.py --quick    # WordLlama on 300 medicines

The bundled medicines get a key column (``row``, the row number; medicine names repeat) and are
indexed with the demo's template (``demo.MEDICINE_TEMPLATE``) into a fresh store: the first full
build. Then, three times, 1% of the rows (another random 1% each time) get a changed ``Uses``
text and the same store is brought up to date with ``index_file(..., key_column="row")``, which
reads the input and the stored records, embeds only the changed rows, appends them and deletes
the rows they replace. Last, the final input is indexed again into a fresh store (the second
full build) with the first store's int8 ranges and centre. Each re-index is compared with the
median full build (both are wall time of ``index_file`` in this process, the model loaded
before the clock starts); the target is at most 5%.

Checked: each re-index embeds exactly the changed rows and deletes as many; the re-indexed
store then holds one live row per key, and its answers to 20 queries (their records and scores,
ids aside) equal the fresh build's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastquant import Calibration, quantize_embeddings
from fastquant.data import medicine_parquet
from fastquant.demo import MEDICINE_TEMPLATE
from fastquant.embed import DEFAULT_BATCH_ROWS, index_file
from fastquant.encoders import load_encoder
from fastquant.store import CorpusStore
from fastquant.texts import TextIndex
from lib import record

CHANGED_SHARE = 0.01
ROUNDS = 3
QUERIES = 20


def medicines(rows: int) -> pa.Table:
    """The first ``rows`` bundled medicines with a ``row`` key column."""
    table = pq.read_table(medicine_parquet()).slice(0, rows)
    return table.add_column(0, "row", pa.array(np.arange(rows)))


def changed(table: pa.Table, rng: np.random.Generator, share: float, round_: int) -> pa.Table:
    """``table`` with the ``Uses`` of a random ``share`` of its rows (at least one) revised."""
    uses = table.column("Uses").to_pylist()
    picked = rng.choice(table.num_rows, max(1, round(share * table.num_rows)), replace=False)
    for i in picked:
        uses[i] = f"{uses[i]} (revised {round_})"
    return table.set_column(table.schema.get_field_index("Uses"), "Uses", pa.array(uses))


def timed_index(source: pa.Table, file: Path, store: Path, encoder, **options):
    pq.write_table(source, file)
    return index_file(
        file, store, template=MEDICINE_TEMPLATE, model=encoder, progress=False, **options
    )


def answers(store: Path, encoder, queries: list[str]) -> list[list[tuple]]:
    """Each query's top 10 as ``(-score, key, record)``, ids aside."""
    with TextIndex.open(store, encoder=encoder) as text_index:
        results = text_index.search(queries, 10)
    return [
        sorted((-round(h.score, 5), h.record["row"], sorted(h.record.items())) for h in r.hits)
        for r in results
    ]


def main(argv: list[str] | None = None) -> int:
    args = record.parser(__doc__).parse_args(argv)
    record.require("wordllama" if args.quick else "onnxruntime")
    run = record.Run("reindex", args, argv)
    model, rows = ("wordllama", 300) if args.quick else ("minilm-onnx-int8", 11_825)
    encoder = load_encoder(model)  # loading the model is not indexing time, nor is loading
    sample = encoder.encode(["warm-up", "kernels"])  # the compiled kernels (once per process)
    Calibration.from_embeddings(sample).quantize(sample)
    quantize_embeddings(sample, "ubinary")
    rng = np.random.default_rng(0)
    table = medicines(rows)
    with tempfile.TemporaryDirectory(prefix="fastquant-reindex-") as folder:
        work = Path(folder)
        first = timed_index(table, work / "v0.parquet", work / "kept", encoder, key_column="row")
        builds = [first.seconds]
        rounds = []
        for round_ in range(1, ROUNDS + 1):
            table = changed(table, rng, CHANGED_SHARE, round_)
            report = timed_index(table, work / "input.parquet", work / "kept", encoder)
            expected = max(1, round(CHANGED_SHARE * rows))
            if report.rows_added != expected or report.rows_deleted != expected:
                raise AssertionError(
                    f"round {round_}: {report.rows_added} rows embedded and "
                    f"{report.rows_deleted} deleted, expected {expected} of each"
                )
            rounds.append(
                {
                    "round": round_,
                    "rows_changed": expected,
                    "seconds": report.seconds,
                    "seconds_reading": report.seconds_reading,
                    "seconds_embedding": report.seconds_embedding,
                    "seconds_storing": report.seconds_storing,
                }
            )
        with CorpusStore.open(work / "kept") as store:
            ranges, centre = store.calibration.ranges, store.snapshot.corpus.centre
            if len(store) != rows:
                raise AssertionError(f"{len(store)} live rows for {rows} keys")
        fresh = timed_index(
            table, work / "fresh.parquet", work / "fresh", encoder, ranges=ranges, centre=centre
        )
        builds.append(fresh.seconds)
        queries = table.column("Uses").to_pylist()[:: max(1, rows // QUERIES)][:QUERIES]
        if answers(work / "kept", encoder, queries) != answers(work / "fresh", encoder, queries):
            raise AssertionError("the re-indexed store answers otherwise than a fresh build")
    rebuild = float(np.median(builds))
    for case in rounds:
        case["share_of_rebuild"] = case["seconds"] / rebuild
    run.save(
        threads="all of the machine's",
        shapes={"rows": rows, "changed share": CHANGED_SHARE, "batch rows": DEFAULT_BATCH_ROWS},
        model=model,
        rebuild_seconds=builds,
        rounds=rounds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
