"""``larger_than_ram.json``: a store searched inside a memory cgroup smaller than the store."""

from __future__ import annotations

from render.common import Images, table

TITLE = "A store larger than RAM"
MIB = 2**20


def _limit(run: dict) -> str:
    return f"{run['limit_bytes'] / MIB:.0f} MiB" if run["limit_bytes"] else "none"


def _cell(run: dict, phase: str, name: str) -> str:
    entry = run[phase][name]
    return f"{entry['median_ms']:.2f} ({entry['major_faults_per_query']:.0f})"


def markdown(result: dict, images: Images) -> str:
    store, runs, shapes = result["store"], result["runs"], result["shapes"]
    latency, memory = [], []
    for name, run in runs.items():
        cells = [name, _limit(run), _cell(run, "warm", "search")]
        cells += [_cell(run, "cold", v) for v in ("prefetch", "no-prefetch", "read-bits")]
        cells += [
            _cell(run, phase, v)
            for phase in ("cold-codes", "cold-rescore")
            for v in ("prefetch", "no-prefetch")
        ]
        latency.append(cells)
        equal = result["ids_equal"] and run["ids_consistent"]
        cells = [name, _limit(run), f"{run['peak_rss_mib']:.0f}", f"{run['rss_anon_end_mib']:.0f}"]
        cells += [f"{run['cgroup_peak_bytes'] / MIB:.0f}", str(run["cgroup_limit_hits"])]
        cells += [str(run["oom_kills"]), f"{run['recall_at_1']:.2f}", "yes" if equal else "NO"]
        memory.append(cells)
    lines = [
        f"The store: {store['bytes'] / 2**30:.2f} GiB ({store['bits_bytes'] / MIB:.0f} MiB bits + "
        f"{store['codes_bytes'] / MIB:.0f} MiB int8 codes) at `{store['path']}`. The same search "
        f"runs in a fresh memory cgroup without a limit and with {shapes['memory limit MiB']} "
        f"MiB, alternating for {result['rounds']} round(s).",
        "",
        "Latency, median ms per query (major page faults per query). `cold`: all chunk files "
        "evicted before each query; `read bits`: reading the bits files after the same eviction "
        "(the disk's limit for the scan); `cold codes`: only the int8 codes evicted (warm scan); "
        f"`rescoring`: only the rescoring of the {shapes['k'] * shapes['rescore multiplier']} "
        "candidates, codes evicted.",
        "",
        *table(
            [
                "run",
                "memory limit",
                "warm",
                "cold, prefetch",
                "cold, no prefetch",
                "read bits",
                "cold codes, prefetch",
                "cold codes, no prefetch",
                "rescoring, prefetch",
                "rescoring, no prefetch",
            ],
            latency,
        ),
        "",
        "Memory and results. Peak RSS (VmHWM) counts mapped file pages (the bits are scanned "
        "through a memory map) and shared libraries; anon RSS is the process's own memory; the "
        "cgroup peak (`memory.max_usage_in_bytes`) counts every page charged to the child, page "
        "cache included; limit hits is the cgroup's `memory.failcnt`.",
        "",
        *table(
            [
                "run",
                "memory limit",
                "peak RSS MiB",
                "anon RSS MiB",
                "cgroup peak MiB",
                "limit hits",
                "OOM kills",
                "recall@1",
                "ids equal to unlimited",
            ],
            memory,
        ),
    ]
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    shapes, store = result["shapes"], result["store"]
    limited = [run for run in result["runs"].values() if run["limit_bytes"]]
    warm = [f"{run['warm']['search']['median_ms']:.1f}" for run in result["runs"].values()]
    cold = [f"{run['cold']['prefetch']['median_ms']:.0f}" for run in result["runs"].values()]
    same = "same ids as unconstrained" if result["ids_equal"] else "DIFFERENT ids"
    return [
        (
            f"{shapes['rows']:,} x {shapes['dim']}-d store ({store['bytes'] / 2**30:.2f} GiB) in a "
            f"{shapes['memory limit MiB']} MiB memory cgroup",
            f"{same}, cgroup peak {max(r['cgroup_peak_bytes'] for r in limited) / MIB:.0f} MiB, "
            f"warm {' / '.join(warm)} ms per query (unlimited / limited), cold {' / '.join(cold)} ms",
        )
    ]
