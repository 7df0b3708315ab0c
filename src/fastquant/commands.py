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
    """Embed a parquet, CSV or JSONL file into a store (resuming an interrupted run)."""
    from .embed import index_file

    if args.text_column is None and args.template is None:
        raise ValueError("say what to embed: --text-column COLUMN or --template '...{Column}...'")
    report = index_file(
        args.input,
        args.store,
        text_column=args.text_column,
        template=args.template,
        model=args.model,
        batch_size=args.batch_size,
        calibration_rows=args.calibration_rows,
        progress=not args.no_progress,
        log=_notice,
    )
    rate = report.rows_added / report.seconds if report.seconds else 0.0
    print(
        f"indexed {report.rows_added:,} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s) "
        f"with {report.model}; {report.store_path} holds {report.rows_total:,} rows"
    )
    if report.rows_added:
        print(
            f"time: embedding {report.seconds_embedding:.1f} s, quantizing and storing "
            f"{report.seconds_storing:.2f} s ({report.storing_share:.1%} of embedding), reading "
            f"{report.seconds_reading:.2f} s"
        )
    return 0


def search(args: argparse.Namespace) -> int:
    """Print the top ``k`` records of a store for each query, as a table or JSON."""
    from .texts import TextIndex

    with TextIndex.open(args.store) as text_index:
        text_index.warm_up()
        results = text_index.search(
            args.queries,
            args.k,
            rescore_multiplier=args.rescore_multiplier,
            backend=args.backend,
            threads=args.threads,
        )
        fields = _pick_fields(text_index.fields, args.fields)
    if args.json:
        output = [_result_json(result, fields) for result in results]
        print(json.dumps(output, ensure_ascii=False, default=_jsonable, allow_nan=False))
    else:
        for result in results:
            _print_results(result, fields, len(text_index))
    return 0


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


def info(args: argparse.Namespace) -> int:
    """Rows, dimension, chunks, and bytes per representation against float32."""
    from .embed import read_index_meta
    from .store import CorpusStore

    with CorpusStore.open(args.store) as store:
        manifest, rows, dim = store.manifest, len(store), store.dim
        calibration = store.calibration_source
    meta = read_index_meta(args.store)
    on_disk = _bytes_by_kind(Path(args.store))
    float32 = rows * dim * 4
    sizes = [
        ("float32 (not stored)", float32),
        ("int8 codes", rows * dim),
        ("binary", rows * manifest.bits_width),
    ]
    facts = {
        "store": str(Path(args.store).resolve()),
        "rows": rows,
        "dim": dim,
        "chunks": len(manifest.chunks),
        "chunk_rows": manifest.chunk_rows,
        "int8 ranges": calibration or "not yet calibrated",
        "model": meta["model"] if meta else None,
        "text": _describe_text(meta["text"]) if meta else None,
        "bytes": dict(sizes) | {"on disk": on_disk},
    }
    if args.json:
        print(json.dumps(facts))
        return 0
    for key in ("store", "rows", "dim", "chunks", "chunk_rows", "int8 ranges", "model", "text"):
        value = facts[key]
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
    kinds = {"binary": 0, "int8 codes": 0, "records": 0, "other": 0}
    for file in path.rglob("*"):
        if not file.is_file():
            continue
        if file.suffix == ".bits":
            kind = "binary"
        elif file.suffix == ".codes":
            kind = "int8 codes"
        elif file.parent.name == "records":
            kind = "records"
        else:
            kind = "other"
        kinds[kind] += file.stat().st_size
    kinds["total"] = sum(kinds.values())
    return kinds


def verify(args: argparse.Namespace) -> int:
    """Check every committed byte of a store (and its records) against its checksum."""
    from .embed import INDEX_META, read_index_meta
    from .records import RecordLog
    from .store import CorpusStore, StoreCorruptedError

    started = time.perf_counter()
    with CorpusStore.open(args.store) as store:
        checked = store.verify()
        rows = len(store)
    meta = read_index_meta(args.store)  # a damaged index.json raises, naming it
    records = RecordLog(args.store)
    if meta is None and len(records):
        raise StoreCorruptedError(f"{records.path / INDEX_META} is missing")
    if meta is not None:
        records.require_rows(rows)
        checked += records.verify()
    print(
        f"ok: {rows:,} rows, {human_bytes(checked)} checked in {time.perf_counter() - started:.1f} s"
    )
    return 0


def demo(args: argparse.Namespace) -> int:
    """Build the medicine demo store on first use, then answer the demo's (or the given) queries."""
    from .demo import DEMO_QUERIES
    from .texts import TextIndex

    path, encoder = _ready_demo_store(args)
    with TextIndex.open(path, encoder=encoder) as text_index:
        text_index.warm_up()
        results = text_index.search(args.query or list(DEMO_QUERIES), args.k)
        for result in results:
            _print_results(result, ["Medicine Name", "Composition", "Uses"], len(text_index))
    return 0


def _ready_demo_store(args: argparse.Namespace):
    """The demo store's path, indexed now if it is not complete, and its loaded encoder."""
    from .demo import build_demo_store, demo_store_complete, demo_store_path
    from .encoders import load_encoder

    encoder = load_encoder(args.model, log=_notice)  # the notice of a one-off export
    path = demo_store_path(encoder.name)
    if not demo_store_complete(path):
        _notice(f"indexing the 11,825 bundled medicines into {path} (once; later runs reuse it)")
        report = build_demo_store(encoder, progress=not args.no_progress, log=_notice)
        _notice(f"indexed {report.rows_added:,} medicines in {report.seconds:.0f} s")
    return path, encoder


def serve(args: argparse.Namespace) -> int:
    """Serve the search page for a store (default: the medicine demo, built if needed)."""
    from .web import serve as serve_page

    if args.store is None:
        path, encoder = _ready_demo_store(args)
        serve_page(path, host=args.host, port=args.port, model=encoder, title="Medicine search")
    else:
        serve_page(args.store, host=args.host, port=args.port, model=args.model)
    return 0


def bench(args: argparse.Namespace) -> int:
    """Cross-check every installed backend on random bits, then time each one."""
    from ._kernels.config import resolve_threads
    from .backends import available_backends
    from .hamming import compare_backends, hamming_topk

    if args.bits <= 0 or args.bits % 8:
        raise ValueError(f"--bits must be a positive multiple of 8, got {args.bits}")
    rng = np.random.default_rng(0)
    nbytes = args.bits // 8
    corpus = rng.integers(0, 256, (args.rows, nbytes), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.batch, nbytes), dtype=np.uint8)
    threads = resolve_threads(args.threads)
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
    return 0 if report.ok else 1


def _median_seconds(run, repeats: int) -> float:
    run()  # warm-up: JIT compilation, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
