"""``mutable.json``: search after deletes, filtered search, the gathered scan, deletes, compaction."""

from __future__ import annotations

from render.common import Images, details, pyplot, ratio, table

TITLE = "A changing store: deletes, filtered search, compaction"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2g}%"


def deletes(result: dict) -> list[str]:
    rows = [
        [
            str(case["batch"]),
            f"{case['ms_per_query']['none']:.2f}",
            f"{case['ms_per_query']['deleted']:.2f}",
            ratio(case["speed_deleted_over_none"]),
        ]
        for case in result["deletes"]
    ]
    share = percent(result["shapes"]["deleted fraction"])
    return [
        f"**Search with {share} of the rows deleted** (random ids, not compacted) against the "
        "same store with none (target: at least 0.95x the speed).",
        "",
        *table(["batch", "ms/query, none deleted", f"ms/query, {share} deleted", "speed"], rows),
    ]


def filters(result: dict) -> list[str]:
    engines, peers = result["filter_engines"], result["peers"]
    lines = [
        "**Filtered search**: `filter=` random allowed ids; ms per query, and in brackets the "
        "speed against the same engine unfiltered (above 1x: faster than no filter). "
        f"*route*: gathered when the allowed rows are at most `GATHER_FRACTION` "
        f"(= {result['gather_fraction']:.4g}) of the rows, else the scan with the allow bitmap.",
        "",
        *[f"- `{name}`: {what}." for name, what in engines.items()],
        "",
    ]
    for case in result["filters"]:
        names = list(case["unfiltered_ms_per_query"])
        vs = [(name, peer) for name, peer in peers.items() if peer in names]
        columns = ["selectivity", "allowed rows", "route", *names]
        columns += [f"{name} vs {peer}" for name, peer in vs]
        unfiltered = case["unfiltered_ms_per_query"]
        rows = [["none", f"{result['shapes']['store rows']:,}", "scan"]]
        rows[0] += [f"{unfiltered[name]:.2f}" for name in names] + [
            ratio(unfiltered[peer] / unfiltered[name]) for name, peer in vs
        ]
        for point in case["points"]:
            row = [
                percent(point["selectivity"]),
                f"{point['allowed_rows']:,}",
                "gathered" if point["gathered"] else "scan",
            ]
            row += [
                f"{point['ms_per_query'][n]:.2f} ({ratio(point['speed_over_unfiltered'][n])})"
                for n in names
            ]
            row += [ratio(point["speed_over_peer"][name]) for name, _ in vs]
            rows.append(row)
        lines += [f"Batch {case['batch']}:", "", *table(columns, rows), ""]
    prep = [
        [percent(c["selectivity"]), f"{c['ms']['ids']:.2f}", f"{c['ms']['mask']:.2f}"]
        for c in result["filter_preparation"]
    ]
    lines += details(
        "Cost of turning a filter into the scan's allow bitmaps (included above)",
        table(["selectivity", "ms, ids", "ms, boolean mask"], prep),
    )
    return lines


def peers_note(result: dict) -> str:
    checks = result["checks"]
    faiss, usearch = checks["faiss"], checks["usearch"]
    binary = (
        "faiss's `IndexBinaryFlat` takes the selector and its answer is exact (checked)"
        if faiss.get("binary_filtered_exact")
        else f"faiss's `IndexBinaryFlat` takes no selector ({faiss.get('binary_error', '')})"
    )
    usearch_text = (
        "usearch's Python `Index.search` takes a filter"
        if usearch["filters"]
        else f"usearch {usearch['version']}'s Python `Index.search` takes no filter or predicate "
        f"(its parameters: {', '.join(usearch['search_parameters'])}), so it is not timed: "
        "predicate filtering is only in usearch's native APIs"
    )
    return (
        f"Exactness, checked on a {checks['rows']:,}-row store in the same run: at every "
        "selectivity (with the gathered scan forced on, off and by default), fastquant's "
        "filtered `search` and `exact_search` return exactly, ids and scores, what a fresh "
        "store of the allowed rows returns, and the store with deletes what a fresh store of "
        "the survivors returns, before and after compaction. faiss's filtered `IndexFlatIP` "
        f"matches float64 dot products over the allowed rows. {binary}. {usearch_text}."
    )


def crossover_plot(result: dict, images: Images) -> str:
    plt = pyplot()
    cases = result["crossover"]
    figure, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 3.6), squeeze=False)
    for axis, case in zip(axes[0], cases):
        x = [100 * p["selectivity"] for p in case["points"]]
        for engine, label in (("scan", "scan with allow bitmap"), ("gathered", "gathered")):
            axis.plot(x, [p["ms_per_query"][engine] for p in case["points"]], "o-", label=label)
        axis.axvline(100 * result["gather_fraction"], color="grey", ls=":", label="GATHER_FRACTION")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("allowed rows, % of the store")
        axis.set_ylabel("ms per query")
        axis.set_title(f"batch {case['batch']}")
        axis.grid(which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return images.save(
        figure, "mutable_crossover.png", "filtered search: the scan against the gathered scan"
    )


def crossover(result: dict, images: Images) -> list[str]:
    found = [
        f"{percent(c['crossover'])} at batch {c['batch']}"
        if c["crossover"] is not None
        else f"none in the range at batch {c['batch']}"
        for c in result["crossover"]
    ]
    lines = [
        "**Where the gathered scan pays**: filtered search with `GATHER_FRACTION` forced to 0 "
        "(every row's bits read, the allow bitmap checked in the kernel) and to 1 (only the "
        "allowed rows scored); both include turning the ids into bitmaps, which is what rises "
        f"on the left past 5%. The gathered scan stops paying at {', '.join(found)} "
        f"(log-interpolated); `GATHER_FRACTION` was {result['gather_fraction']:.4g} in this run.",
        "",
        crossover_plot(result, images),
        "",
    ]
    for case in result["crossover"]:
        rows = [
            [
                percent(p["selectivity"]),
                f"{p['allowed_rows']:,}",
                f"{p['ms_per_query']['scan']:.2f}",
                f"{p['ms_per_query']['gathered']:.2f}",
                ratio(p["gathered_over_scan"]),
            ]
            for p in case["points"]
        ]
        columns = [
            "selectivity",
            "allowed rows",
            "ms/query, scan",
            "ms/query, gathered",
            "time ratio",
        ]
        lines += details(f"Batch {case['batch']}: the points", table(columns, rows))
    return lines


def writes(result: dict) -> list[str]:
    done = result["compaction"]
    rows = [
        [
            f"{c['ids_per_call']:,}",
            "{:,} to {:,}".format(*c["listed_before"]) if c["listed_before"][1] else "none",
            f"{c['ms_per_call']:.1f}",
            f"{c['ids_per_second']:,.0f}",
        ]
        for c in [*result["delete_rate"], done["delete"]]
    ]
    mb = done["mb_per_second"]
    return [
        "**Deletes**: each call is one committed delete (the whole list of deleted ids "
        "rewritten and flushed, then a new manifest).",
        "",
        *table(["ids per call", "ids deleted before", "ms per call", "ids per second"], rows),
        "",
        f"**Compaction** of the store with {done['rows_removed']:,} rows deleted: "
        f"{done['median_seconds']['compact']:.1f} s, {mb['compact']:,.0f} MB/s of the store's "
        f"{done['bytes_before'] / 1e6:,.0f} MB; {done['bytes_before'] / 1e6:,.0f} MB before, "
        f"{done['bytes_after'] / 1e6:,.0f} MB after ({done['bytes_returned'] / 1e6:,.0f} MB "
        f"returned, {done['chunks_rewritten']} chunk(s) rewritten). A plain copy of the same "
        f"files with `fsync` runs at {mb['copy']:,.0f} MB/s: compaction at "
        f"{ratio(done['speed_compact_over_copy'])} its speed.",
    ]


def markdown(result: dict, images: Images) -> str:
    lines = [
        "Store of normalized gaussian rows, default search route (asymmetric scan, int8 "
        "rescoring x4); engines compared in alternating rounds of one run.",
        "",
        peers_note(result),
        "",
        *deletes(result),
        "",
        *filters(result),
        "",
        *crossover(result, images),
        "",
        *writes(result),
    ]
    return "\n".join(lines)


def headline(result: dict) -> list[tuple[str, str]]:
    shapes = result["shapes"]
    store = f"{shapes['store rows']:,} x {shapes['store dim']}-d"
    speeds = ", ".join(
        f"{ratio(c['speed_deleted_over_none'])} (batch {c['batch']})" for c in result["deletes"]
    )
    one = [
        f"{ratio(p['speed_over_unfiltered']['fastquant'])} at {percent(p['selectivity'])}"
        for p in result["filters"][0]["points"]
    ]
    return [
        (
            f"Search with {percent(shapes['deleted fraction'])} of rows deleted vs none, {store}",
            speeds,
        ),
        (f"Filtered search vs unfiltered, batch 1, {store} (exact)", ", ".join(one)),
        (
            f"Compaction, {store}, {percent(shapes['deleted fraction'])} deleted",
            f"{result['compaction']['mb_per_second']['compact']:,.0f} MB/s",
        ),
    ]
