"""What each ``fastquant`` subcommand does; ``cli.py`` parses the arguments and reports errors."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .tables import human_bytes, render_table


def _notice(message: str) -> None:
    print(message, file=sys.stderr)


def index(args: argparse.Namespace) -> int:
    """Embed a parquet, CSV or JSONL file into a store, or index its precomputed embeddings
    (resuming an interrupted run)."""
    from .embed import index_file

    what = (args.text_column, args.template, args.embedding_column, args.embeddings)
    if all(option is None for option in what):
        raise ValueError(
            "say what to index: --text-column COLUMN or --template '...{Column}...' (text to "
            "embed), or --embedding-column COLUMN or --embeddings FILE.npy (embeddings)"
        )
    if args.input is None and args.embeddings is None:
        raise ValueError("give the INPUT file (only --embeddings FILE.npy can do without one)")
    report = index_file(
        args.input,
        args.store,
        text_column=args.text_column,
        template=args.template,
        model=args.model,
        embedding_column=args.embedding_column,
        embeddings=args.embeddings,
        batch_size=args.batch_size,
        calibration_rows=args.calibration_rows,
        key_column=args.key_column,
        delete_missing=args.delete_missing,
        progress=not args.no_progress,
        log=_notice,
    )
    rate = report.rows_added / report.seconds if report.seconds else 0.0
    made = f"with {report.model}" if report.model else "from precomputed embeddings"
    print(
        f"indexed {report.rows_added:,} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s) "
        f"{made}; {report.store_path} holds {report.rows_total:,} rows"
    )
    if report.rows_deleted or report.rows_unchanged:
        print(
            f"by key: {report.rows_unchanged:,} rows unchanged, {report.rows_deleted:,} deleted "
            "(changed or gone from the input)"
        )
    if report.rows_added and report.model:
        print(
            f"time: embedding {report.seconds_embedding:.1f} s, quantizing and storing "
            f"{report.seconds_storing:.2f} s ({report.storing_share:.1%} of embedding), reading "
            f"{report.seconds_reading:.2f} s"
        )
    elif report.rows_added:
        print(
            f"time: reading {report.seconds_reading:.2f} s, converting and checking the "
            f"embeddings {report.seconds_embedding:.2f} s, quantizing and storing "
            f"{report.seconds_storing:.2f} s"
        )
    return 0


def search(args: argparse.Namespace) -> int:
    """Print the top ``k`` records of a store for each query (texts, or the vectors of a ``.npy``
    file), as a table or JSON."""
    from .encoders import load_encoder
    from .texts import TextIndex

    if bool(args.queries) == (args.query_vector is not None):
        raise ValueError(
            "give query texts or --query-vector FILE.npy, not both"
            if args.queries
            else "give query texts, or --query-vector FILE.npy"
        )
    encoder = None if args.model is None else load_encoder(args.model)
    options = {
        "scan": args.scan,
        "rescore_multiplier": args.rescore_multiplier,
        "backend": args.backend,
        "threads": args.threads,
        "where": args.where,
    }
    with TextIndex.open(args.store, encoder=encoder) as text_index:
        if args.query_vector is None:
            text_index.warm_up()
            results = text_index.search(args.queries, args.k, **options)
        else:
            queries = _query_vectors(Path(args.query_vector), text_index.store.dim)
            text_index.warm_up(text=False)
            results = text_index.search_vectors(queries, args.k, **options)
        fields = _pick_fields(text_index.fields, args.fields)
    if args.json:
        output = [_result_json(result, fields) for result in results]
        print(json.dumps(output, ensure_ascii=False, default=_jsonable, allow_nan=False))
    else:
        for result in results:
            _print_results(result, fields, len(text_index))
    return 0


def _query_vectors(file: Path, dim: int) -> np.ndarray:
    """The query vectors of the ``.npy`` file ``file``: ``(dim,)`` or ``(queries, dim)`` floats."""
    try:
        queries = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"cannot read {file} as a .npy array: {error}") from None
    if queries.dtype.kind != "f" or queries.ndim not in (1, 2) or queries.shape[-1] != dim:
        raise ValueError(
            f"{file} holds {queries.dtype} of shape {queries.shape}; the store holds {dim}-d "
            f"vectors: give float ({dim},) or (queries, {dim})"
        )
    return queries


def _pick_fields(available: list[str], wanted: str | None) -> list[str]:
    if wanted is None:
        return available
    fields = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in fields if name not in available]
    if unknown:
        raise ValueError(
            f"unknown field {', '.join(map(repr, unknown))}; the records have: "
            f"{', '.join(map(repr, available))}"
        )
    return fields


def _result_json(result, fields: list[str]) -> dict:
    return {
        "query": result.query,
        "seconds_embedding": result.seconds_embedding,
        "seconds_search": result.seconds_search,
        "hits": [
            {
                "rank": hit.rank,
                "id": hit.id,
                "score": hit.score,
                "record": {name: _finite(hit.record.get(name)) for name in fields},
            }
            for hit in result.hits
        ],
    }


def _finite(value: object) -> object:
    """NaN and infinities (which JSON cannot hold) as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _jsonable(value: object) -> object:
    """Record values JSON has no type for: dates as ISO text, bytes as hex, the rest as text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def _print_results(result, fields: list[str], rows: int) -> None:
    print(f'\n"{result.query}"')
    print(
        render_table(
            ["rank", "score", *fields],
            [[hit.rank, hit.score, *(hit.record.get(f) for f in fields)] for hit in result.hits],
        )
    )
    print(
        f"{len(result.hits)} results from {rows:,} rows: search {result.seconds_search * 1e3:.1f} ms"
        f", embedding the query {result.seconds_embedding * 1e3:.1f} ms"
    )


def delete(args: argparse.Namespace) -> int:
    """Delete a store's rows by id (``--ids``) or by an SQL condition over its records
    (``--where``, text stores); prints how many rows were deleted."""
    from .store import CorpusStore
    from .text_store import TextStore
    from .texts import TextIndex

    if (args.ids is None) == (args.where is None):
        raise ValueError('say which rows to delete: --ids 3,5,9 or --where "SQL condition"')
    if args.where is not None:
        text_store = TextStore.open(args.store)
        if text_store.description is None and not text_store.marked:
            raise ValueError(
                f"--where filters by the records of a store built by fastquant index; "
                f"{args.store} has none: delete by --ids"
            )
        with TextIndex.open(args.store) as text_index:
            ids = text_index.where_ids(args.where)
            deleted, live = text_index.store.delete(ids), len(text_index.store)
    else:
        ids = _id_list(args.ids)
        with CorpusStore.open(args.store) as store:
            deleted, live = store.delete(ids), len(store)
    print(f"deleted {deleted:,} rows; {args.store} holds {live:,} rows")
    return 0


def _id_list(text: str) -> np.ndarray:
    """The ids of ``--ids 3,5,9`` as ``(m,) int64``."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--ids takes comma-separated row ids like 3,5,9, got {text!r}") from None
    if not ids:
        raise ValueError("--ids is empty: give comma-separated row ids like 3,5,9")
    return np.asarray(ids, dtype=np.int64)


def compact(args: argparse.Namespace) -> int:
    """Rewrite a store's chunks without its deleted rows; prints the rows removed and the bytes
    on disk before and after."""
    from .store import CorpusStore

    with CorpusStore.open(args.store) as store:
        report = store.compact(progress=not args.no_progress)
    print(
        f"removed {report.rows_removed:,} deleted rows from {report.chunks_rewritten:,} chunks; "
        f"{human_bytes(report.bytes_before)} before, {human_bytes(report.bytes_after)} after "
        f"({human_bytes(report.bytes_returned)} returned)"
    )
    return 0


#: How ``fastquant info`` describes a store's kind of bits.
BITS_MEANING = {
    "centred": "centred (x > centre, with row factors for the asymmetric scan)",
    "sign": "sign (x > 0, fastquant 0.1's layout)",
}


def info(args: argparse.Namespace) -> int:
    """Live rows, deleted rows not yet compacted, the next id, dimension, chunks, and bytes per
    representation against float32."""
    from .store import CorpusStore
    from .store.manifest import FACTOR_BYTES
    from .text_store import TextStore

    with CorpusStore.open(args.store) as store:
        manifest, rows, dim = store.manifest, len(store), store.dim
        deleted, next_id = store.deleted_rows, store.next_id
        calibration = store.calibration_source
    description = TextStore.open(args.store).description
    on_disk = _bytes_by_kind(Path(args.store))
    float32 = rows * dim * 4
    sizes = [
        ("float32 (not stored)", float32),
        ("int8 codes", rows * dim),
        ("binary", rows * manifest.bits_width),
    ]
    if manifest.centred:  # what the asymmetric scan reads besides the bits
        sizes.append(("binary + row factors", rows * (manifest.bits_width + FACTOR_BYTES)))
    facts = {
        "store": str(Path(args.store).resolve()),
        "rows": rows,
        "deleted": deleted,
        "next id": next_id,
        "dim": dim,
        "chunks": len(manifest.chunks),
        "chunk_rows": manifest.chunk_rows,
        "int8 ranges": calibration or "not yet calibrated",
        "bits": BITS_MEANING[manifest.bits],
        "model": description.model if description else None,
        "text": _describe_text(description.text) if description and description.text else None,
        "vectors": description.made_from if description and description.vectors else None,
        "bytes": dict(sizes) | {"on disk": on_disk},
    }
    if args.json:
        print(json.dumps(facts))
        return 0
    keys = (
        "store",
        "rows",
        "deleted",
        "next id",
        "dim",
        "chunks",
        "chunk_rows",
        "int8 ranges",
        "bits",
        "model",
        "text",
        "vectors",
    )
    shown = facts | {"deleted": f"{deleted:,} rows not yet compacted (fastquant compact)"}
    for key in keys:
        value = shown[key]
        if value is not None:
            print(
                f"{key + ':':<13}{value:,}" if isinstance(value, int) else f"{key + ':':<13}{value}"
            )
    table = [
        [name, human_bytes(size), f"{float32 / size:.1f}x smaller" if size and i else ""]
        for i, (name, size) in enumerate(sizes)
    ]
    table += [[f"on disk: {kind}", human_bytes(size), ""] for kind, size in on_disk.items()]
    print()
    print(render_table(["representation", "bytes", "vs float32"], table))
    return 0


def _describe_text(text: dict[str, str]) -> str:
    return f"column {text['column']!r}" if "column" in text else f"template {text['template']!r}"


def _bytes_by_kind(path: Path) -> dict[str, int]:
    """Bytes on disk of the store's files: binary chunks, int8 chunks, records, the rest."""
    from .records import RECORDS_DIR

    kinds = {"binary": 0, "int8 codes": 0, "records": 0, "other": 0}
    for file in path.rglob("*"):
        if not file.is_file():
            continue
        if file.suffix == ".bits":
            kind = "binary"
        elif file.suffix == ".codes":
            kind = "int8 codes"
        elif file.parent.name == RECORDS_DIR:
            kind = "records"
        else:
            kind = "other"
        kinds[kind] += file.stat().st_size
    kinds["total"] = sum(kinds.values())
    return kinds


def verify(args: argparse.Namespace) -> int:
    """Check every committed byte of a store (and its records) against its checksum."""
    from .text_store import verify_store

    started = time.perf_counter()
    rows, checked = verify_store(args.store)
    print(
        f"ok: {rows:,} rows, {human_bytes(checked)} checked in {time.perf_counter() - started:.1f} s"
    )
    return 0


def demo(args: argparse.Namespace) -> int:
    """Build the medicine demo store on first use, then answer the demo's (or the given) queries."""
    from .demo import DEMO_FIELDS, DEMO_QUERIES
    from .texts import TextIndex

    path, encoder = _ready_demo_store(args)
    with TextIndex.open(path, encoder=encoder) as text_index:
        text_index.warm_up()
        results = text_index.search(args.query or list(DEMO_QUERIES), args.k)
        for result in results:
            _print_results(result, list(DEMO_FIELDS), len(text_index))
    return 0


def _ready_demo_store(args: argparse.Namespace):
    """The demo store's path, indexed now if it is not complete, and its loaded encoder."""
    from .demo import build_demo_store, demo_store_complete, demo_store_path, medicine_rows
    from .encoders import load_encoder

    encoder = load_encoder(args.model, log=_notice)  # the notice of a one-off export
    path = demo_store_path(encoder.name)
    if not demo_store_complete(path):
        _notice(
            f"indexing the {medicine_rows():,} bundled medicines into {path} "
            "(once; later runs reuse it)"
        )
        report = build_demo_store(encoder, progress=not args.no_progress, log=_notice)
        _notice(f"indexed {report.rows_added:,} medicines in {report.seconds:.0f} s")
    return path, encoder


def serve(args: argparse.Namespace) -> int:
    """Serve the search page for a store (default: the medicine demo, built if needed)."""
    from .demo import DEMO_TITLE
    from .web import serve as serve_page

    if args.store is None:
        path, encoder = _ready_demo_store(args)
        serve_page(path, host=args.host, port=args.port, model=encoder, title=DEMO_TITLE)
    else:
        from .text_store import TextStore

        description = TextStore.open(args.store).description
        if description is not None and description.text is None:
            raise ValueError(
                f"the search page searches text fields: {args.store} holds "
                f"{description.made_from}; search it with fastquant search"
            )
        serve_page(args.store, host=args.host, port=args.port, model=args.model)
    return 0


def bench(args: argparse.Namespace) -> int:
    """Cross-check every installed backend on random bits, then time each one; the same for the
    engines of the asymmetric scan."""
    from .backends import available_backends
    from .hamming import compare_backends, hamming_topk
    from .validation import thread_count

    if args.bits <= 0 or args.bits % 8:
        raise ValueError(f"--bits must be a positive multiple of 8, got {args.bits}")
    rng = np.random.default_rng(0)
    nbytes = args.bits // 8
    corpus = rng.integers(0, 256, (args.rows, nbytes), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.batch, nbytes), dtype=np.uint8)
    threads = thread_count(args.threads)
    backends = available_backends()
    print(
        f"{args.rows:,} rows x {args.bits} bits, batch {args.batch}, k={args.k}, {threads} thread(s)"
    )
    report = compare_backends(corpus, queries, args.k, backends=backends, threads=threads)
    print(f"identical results: {', '.join(report.agree)}")
    for name, why in report.mismatches.items():
        print(f"MISMATCH {name}: {why}")
    rates = {}
    for name in backends:
        seconds = _median_seconds(
            lambda name=name: hamming_topk(corpus, queries, args.k, backend=name, threads=threads),
            args.repeats,
        )
        rates[name] = args.batch / seconds
    print(f"{'backend':<10}{'queries/s':>12}{'numba speed-up':>16}")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        print(f"{name:<10}{rate:>12,.0f}{rates['numba'] / rate:>15.2f}x")
    same = _bench_asymmetric(args, corpus, rng.standard_normal((args.batch, args.bits)), threads)
    return 0 if report.ok and same else 1


def _bench_asymmetric(args: argparse.Namespace, corpus, queries, threads: int) -> bool:
    """The asymmetric scan of the same bits with float queries: engines cross-checked, timed."""
    from ._engine import ASYMMETRIC_BACKENDS
    from .asymmetric import asymmetric_topk

    print(f"\nasymmetric scan (the same bits, {args.batch} float queries quantized to 4 bits)")

    def run(name: str):
        return asymmetric_topk(corpus, queries, args.k, backend=name, threads=threads)

    answers = {name: run(name) for name in ASYMMETRIC_BACKENDS}
    same = all(
        np.array_equal(answers[name][i], answers["numba"][i]) for name in answers for i in (0, 1)
    )
    print("identical results: numba, numpy" if same else "MISMATCH numpy: differs from numba")
    rates = {
        name: args.batch / _median_seconds(lambda name=name: run(name), args.repeats)
        for name in ASYMMETRIC_BACKENDS
    }
    print(f"{'backend':<10}{'queries/s':>12}{'numba speed-up':>16}")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        print(f"{name:<10}{rate:>12,.0f}{rates['numba'] / rate:>15.2f}x")
    return same


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up: JIT compilation, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
