"""``fuzz_store.json``: random damage to store files, and what every probe ended in."""

from __future__ import annotations

from render.common import Images

TITLE = "Corruption fuzzing: damaged store files"


def markdown(result: dict, images: Images) -> str:
    outcomes = result["outcomes"]
    lines = [
        f"{result['cases']} random cases (seed {result['seed']}): each damages one store file "
        "(byte flips, cuts, extensions, deletions, directories, FIFOs, symlinks inside and "
        "outside the store, hard links, strangers in `chunks/`, valid JSON with wrong values), "
        "then opens, searches, refreshes, verifies and appends in a child process with a "
        "timeout (`tests/store_fuzz.py`). A bad outcome (hang, signal, crash, wrong error, "
        "silent change, a reader or an append changing a byte it must not) fails the run.",
        "",
        "By kind of damage:",
        "",
        "```text",
        result["tables"]["kind"],
        "```",
        "",
        "By file:",
        "",
        "```text",
        result["tables"]["target"],
        "```",
        "",
        f"Bad outcomes: {sum(outcomes.get(name, 0) for name in BAD)}. Slowest refusal "
        f"{result['slowest_refusal_s']:.2f} s; slowest probe (all its stages) "
        f"{result['slowest_probe_s']:.1f} s.",
    ]
    if "costs" in result:
        costs = result["costs"]
        lines += [
            "",
            f"What the checks cost on one chunk of {costs['shape'][0]:,} x {costs['shape'][1]} "
            "(medians, ms): "
            + ", ".join(f"{name.removesuffix('_ms')} {value}" for name, value in costs.items()
                        if name.endswith("_ms")),
        ]  # fmt: skip
    return "\n".join(lines)


#: Outcomes that fail a run (``tests/store_fuzz.py``).
BAD = ("hang", "signal", "crash", "wrong error", "silent change", "reader wrote", "destroyed",
       "append broke")  # fmt: skip


def headline(result: dict) -> list[tuple[str, str]]:
    bad = sum(result["outcomes"].get(name, 0) for name in BAD)
    return [
        (
            "Damaged store files (random mutations, each probe in a child process)",
            f"{result['cases']} cases: {bad} hangs, signals, silent changes or destroyed bytes",
        )
    ]
