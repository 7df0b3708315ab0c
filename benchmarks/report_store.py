"""Memory, store and pipeline sections of ``docs/benchmarks.md``."""

from __future__ import annotations

from report_common import Figures, command_line, machine_line, ratio

MEMORY_DIMS = (384, 1024)
VECTORS = 1_000_000


def memory_bytes(dim: int) -> dict[str, int]:
    """Bytes of one million vectors of ``dim`` dimensions in each precision."""
    return {"float32": 4 * dim * VECTORS, "int8": dim * VECTORS, "binary": dim // 8 * VECTORS}


def memory_section(_: dict, __: Figures) -> list[str]:
    """Computed, not measured: bytes per million vectors (float32 / int8 / binary)."""
    lines = [
        "Computed: 4 bytes per dimension for float32, 1 for int8, 1 bit for binary (packed 8 per "
        "byte). MB = 10^6 bytes. A `CorpusStore` keeps both codes on disk and scans only the "
        "bits, so what a search needs in RAM is the binary column; the int8 rows of the "
        "candidates are read from the page cache or the disk.",
        "",
        "| dims | float32 | int8 | binary | int8 vs float32 | binary vs float32 | store on disk "
        "(binary + int8) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dim in MEMORY_DIMS:
        size = memory_bytes(dim)
        cells = [str(dim)] + [f"{size[p] / 1e6:,.0f} MB" for p in ("float32", "int8", "binary")]
        cells += [f"1/{size['float32'] // size['int8']}", f"1/{size['float32'] // size['binary']}"]
        cells.append(f"{(size['int8'] + size['binary']) / 1e6:,.0f} MB")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _store_infos(data: dict, kind: str) -> list[dict]:
    return [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == kind]


def store_section(data: dict, __: Figures) -> list[str]:
    """Warm rescoring, search against the bare scan, appends (``store.json``)."""
    lines = [
        machine_line(
            data.get("machine_info", {}),
            "2 for searches, 1 for rescoring",
            "a 1M x 1024-d store of normalized gaussian rows; k 10, x4 rescoring (40 "
            "candidates); appends of 1M x 384-d rows in batches of 100k",
        ),
        "Engines compared in one test run in alternating rounds.",
        command_line("store"),
        "",
    ]
    for info in _store_infos(data, "store-rescore"):
        us = info["median_us_per_query"]
        lines.append(
            f"- Warm int8 rescoring of {info['candidates']} candidates x {info['dim']}-d, one "
            f"query at a time: {us['store']:.1f} us per query from the store's memory-mapped "
            f"chunks ({us['store-no-prefetch']:.1f} us without the `madvise` prefetch), "
            f"{us['public-in-ram']:.1f} us with `rescore_int8` on an in-memory array."
        )
    for info in _store_infos(data, "store-search"):
        over = info["over_kernel"]
        lines.append(
            f"- `store.search`, batch {info['batch']}: {info['ms_per_query']['search']:.2f} ms "
            f"per query, {ratio(over['search'])} the bare Hamming scan of the same bits in "
            f"memory (no rescoring {ratio(over['search-none'])}, bit rescoring "
            f"{ratio(over['search-bits'])})."
        )
    for info in _store_infos(data, "store-append"):
        share = info["share"]
        lines.append(
            f"- Append {info['rows']:,} x {info['dim']}-d in batches of {info['batch_rows']:,}: "
            f"{info['rows_per_minute'] / 1e6:.0f}M rows per minute (quantization "
            f"{100 * share['quantize']:.0f}%, CRC-32 {100 * share['crc']:.0f}%, writes, fsync "
            f"and commits {100 * share['io_and_commit']:.0f}%)."
        )
    return lines


def larger_than_ram_section(data: dict, __: Figures) -> list[str]:
    """A store larger than its memory cgroup (``larger_than_ram.json``)."""
    store, settings = data["store"], data["settings"]
    lines = [
        machine_line(
            data["machine"],
            str(settings["threads"]),
            f"a {store['rows']:,} x {store['dim']}-d store ({store['bytes'] / 2**30:.2f} GiB), "
            f"{settings['queries']} queries one at a time, k {settings['k']}, "
            f"x{settings['rescore_multiplier']} int8 rescoring",
        ),
        f"The same search runs in a fresh memory cgroup without a limit and with "
        f"{settings['limit_mib']} MiB, alternating for {settings['rounds']} rounds; 'cold' "
        "evicts the store's files before each query. Details: "
        "[`benchmarks/results/larger_than_ram.md`](../benchmarks/results/larger_than_ram.md).",
        command_line("larger_than_ram"),
        "",
        "| run | warm ms | cold ms | cold rescoring ms (prefetch / none) | cgroup peak MiB "
        "| OOM kills | same ids as unlimited |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in data["runs"].items():
        rescoring = run["cold-rescore"]
        cells = [
            name,
            f"{run['warm']['search']['median_ms']:.2f}",
            f"{run['cold']['prefetch']['median_ms']:.1f}",
            f"{rescoring['prefetch']['median_ms']:.2f} / {rescoring['no-prefetch']['median_ms']:.2f}",
            f"{run['cgroup_peak_bytes'] / 2**20:.0f}",
            str(run["oom_kills"]),
            "yes" if data["ids_equal"] and run["ids_consistent"] else "NO",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(key: str, value) -> str:
    """A value for a table: shares (keys containing ``share``) in percent, numbers rounded."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if "share" in key.lower():
        return f"{100 * value:.1f}%"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def _table(rows: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(k, row[k]) if k in row else "" for k in keys) + " |")
    return lines


def pipeline_section(data: dict, __: Figures) -> list[str]:
    """HOOK for ``pipeline.json`` (the lead's benchmark): share of indexing time outside the model.

    Its format is not fixed, so this reads it defensively: ``machine`` and ``command`` if
    present, every list of objects (such as ``cases``) as a table, other top-level values as a
    list; shares (keys containing ``share``) in percent. Replace with the figures that matter
    once the format settles.
    """
    lines = []
    if isinstance(data.get("machine"), dict):
        threads = str(data.get("threads", "as the benchmark records them"))
        lines.append(machine_line(data["machine"], threads, "one row per case below"))
    lines.append(command_line("pipeline", data))
    for key, value in data.items():
        if key in ("machine", "command"):
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += ["", f"`{key}`:", "", *_table(value)]
        elif not isinstance(value, dict | list):
            lines.append(f"- `{key}`: {_cell(key, value)}")
    return lines


def pipeline_shares(data: dict) -> list[str]:
    """``"<case>: <share>"`` for every share in ``pipeline.json``'s cases (for the headline)."""
    shares = []
    for case in data.get("cases", []):
        for key, value in case.items() if isinstance(case, dict) else ():
            if "share" in key.lower() and isinstance(value, int | float):
                shares.append(
                    f"{case.get('model', '?')} {key.replace('_', ' ')} {100 * value:.1f}%"
                )
    return shares
