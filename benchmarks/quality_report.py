"""``benchmarks/results/quality.md`` from the content of ``quality.json`` (Markdown tables)."""

from __future__ import annotations

#: How the per-multiplier methods of ``quality.run_methods`` read in tables.
LABELS = {
    "float32 rescore": "binary + float32 rescoring (= candidates' recall)",
    "int8 rescore": "fastquant: binary + int8 rescoring",
    "int8 retention": "int8 retention (int8 / float32 rescoring)",
    "bits rescore": "fastquant: binary + bit rescoring",
    "st faiss ubinary": "ST `semantic_search_faiss`, ubinary",
    "st faiss uint8": "ST `semantic_search_faiss`, uint8",
    "st usearch ubinary": "ST `semantic_search_usearch`, ubinary",
    "st usearch int8": "ST `semantic_search_usearch`, int8",
}


def _recall_tables(model: dict, k: int) -> list[str]:
    lines = [
        f"### Recall@{k} against exact float32 search",
        "",
        "Without a multiplier:",
        "",
        "| corpus | queries | binary, Hamming order | int8 exact (all rows) |",
        "|---|---|---|---|",
    ]
    for case in model["recall"]:
        lines.append(
            f"| {case['corpus']} ({case['corpus_rows']:,}) | {case['queries']} "
            f"({case['query_count']}) | {case['recall']['binary']:.4f} "
            f"| {case['recall']['int8 exact']:.4f} |"
        )
    for case in model["recall"]:
        rows = case["multipliers"]
        multipliers = list(rows)
        lines += [
            "",
            f"{case['corpus']} ({case['corpus_rows']:,} rows) x {case['queries']} "
            f"({case['query_count']} queries), by rescore multiplier:",
            "",
            "| method | " + " | ".join(f"x{m}" for m in multipliers) + " |",
            "|---|" + "---|" * len(multipliers),
        ]
        for key, label in LABELS.items():
            if key in rows[multipliers[0]]:
                cells = " | ".join(f"{rows[m][key]:.4f}" for m in multipliers)
                lines.append(f"| {label} | {cells} |")
    return lines


def _ndcg_table(model: dict, k: int) -> list[str]:
    ndcg = model["ndcg"]
    values, multipliers = ndcg["ndcg"], ndcg["multipliers"]
    reference = values["float32 exact"]

    def cell(name: str) -> str:
        return f"{values[name]:.4f} ({100 * values[name] / reference:.1f}%)"

    lines = [
        f"### NDCG@{k}: {ndcg['task']}",
        "",
        f"{ndcg['query_count']} queries over {ndcg['corpus_rows']:,} medicines; in brackets, "
        "the share of exact float32 search's NDCG.",
        "",
        f"Without a multiplier: float32 exact {cell('float32 exact')}, int8 exact "
        f"{cell('int8 exact')}, binary in Hamming order {cell('binary')}.",
        "",
        "| method | " + " | ".join(f"x{m}" for m in multipliers) + " |",
        "|---|" + "---|" * len(multipliers),
    ]
    for key, label in LABELS.items():
        if f"{key} x{multipliers[0]}" in values:
            cells = " | ".join(cell(f"{key} x{m}") for m in multipliers)
            lines.append(f"| {label} | {cells} |")
    return lines


def markdown(results: dict) -> str:
    """The whole of ``quality.md``."""
    machine, k, st = results["machine"], results["k"], results["sentence_transformers"]
    lines = [
        "# Retrieval quality on real embeddings",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores. "
        f"Reproduce: `{results['command']}` (embeddings cached in `benchmarks/.cache/`).",
        "",
        f"Recall@{k} is against the exact float32 top {k} (dot product); "
        f"{results['recall_definition']}. Retention = recall of int8 rescoring / recall of "
        "float32 rescoring of the same Hamming candidates; float32 rescoring keeps every true "
        "neighbour among the candidates, so its recall is also theirs.",
        "",
        f"Texts: {'; '.join(f'{name}: {text}' for name, text in results['texts'].items())}.",
        "",
        f"sentence-transformers {st['sentence_transformers']}: "
        + "; ".join(f"`{name}` = `{call}`" for name, call in st["methods"].items())
        + f"; all with {st['common']}.",
    ]
    for model in results["models"].values():
        lines += ["", f"## {model['name']} ({model['dim']}-d)", ""]
        lines += _recall_tables(model, k)
        lines += [""] + _ndcg_table(model, k)
    return "\n".join(lines) + "\n"
