"""Retrieval quality of binary search with int8 rescoring on real embeddings, next to ST's own.

Models (``embedders.py``): all-MiniLM-L6-v2 (384-d) and WordLlama-256. Corpora: one text per
bundled medicine (11,825; the first 1,000 with ``--quick``) and, in the full run, the 1,512
distinct side-effect lists. Queries are real texts that are not corpus rows: the distinct
``Uses`` strings and a sample of distinct ``Composition`` strings. For each rescore multiplier m
the store's Hamming top 10m candidates are rescored three ways: by the store with int8 codes, by
the store with the bits, and here with the original float32 vectors; sentence-transformers'
``semantic_search_faiss`` / ``semantic_search_usearch`` run on the same embeddings with the same
m (``st_search.py``). The issue's criterion: at m = 4, int8 rescoring keeps at least 99% of the
recall@10 (against exact float32 search) that float32 rescoring of the same candidates reaches.

The full run writes ``benchmarks/results/quality.json`` and ``quality.md``:
``python -m pytest benchmarks/test_bench_quality.py -q -s``. Embeddings are cached in
``benchmarks/.cache/``; a new text set needs the model's package (offline).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("faiss")
pytest.importorskip("usearch")
pytest.importorskip("sentence_transformers")

import embedders  # noqa: E402  (after the skips)
import quality  # noqa: E402
import quality_report  # noqa: E402
import st_search  # noqa: E402
from conftest import machine_info  # noqa: E402
from fastquant.store import CorpusStore  # noqa: E402

K = 10
MULTIPLIERS = (1, 2, 4, 10)
ASSERTED_MULTIPLIER = 4
MIN_RETENTION = 0.99
QUICK_ROWS = 1_000
QUICK_QUERIES = 100
COMPOSITION_QUERIES = 500
SEED = 20261121
RESULTS_DIR = Path(__file__).resolve().parent / "results"

CASES = [("medicines", "uses"), ("medicines", "compositions"), ("side effects", "uses")]
MODELS = list(embedders.EMBEDDERS)


@pytest.fixture(scope="module", params=MODELS)
def embedder(request: pytest.FixtureRequest) -> embedders.Embedder:
    return embedders.EMBEDDERS[request.param]


def _embed(texts: list[str], recipe: str, embedder: embedders.Embedder) -> np.ndarray:
    try:
        return embedders.embed(texts, recipe, embedder)
    except ImportError as error:  # no cache and no offline model package
        pytest.skip(f"cannot embed {len(texts)} new texts with {embedder.name}: {error}")


@pytest.fixture(scope="module")
def medicines(quick: bool) -> dict[str, list[str]]:
    return quality.read_medicines(QUICK_ROWS if quick else None)


@pytest.fixture(scope="module")
def corpora(embedder, medicines, quick: bool, tmp_path_factory: pytest.TempPathFactory):
    """``{name: (corpus_f32 (n, dim), store)}``: the store holds the rows in id order."""

    def build(corpus_f32: np.ndarray):
        path = tmp_path_factory.mktemp("quality") / "store"
        store = CorpusStore.create(path, corpus_f32.shape[1], calibration_embeddings=corpus_f32)
        store.append(corpus_f32)
        return corpus_f32, store

    texts = quality.medicine_texts(medicines)
    built = {"medicines": build(_embed(texts, quality.MEDICINE_RECIPE, embedder))}
    if not quick:
        side_effects = quality.sample_distinct(medicines["Side_effects"], None, SEED)
        built["side effects"] = build(_embed(side_effects, "side-effects-v1", embedder))
    return built


@pytest.fixture(scope="module")
def query_sets(embedder, medicines, quick: bool) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{name: (texts, queries_f32)}``: all distinct uses and a sample of compositions (100 each with --quick)."""
    sizes = {
        "uses": QUICK_QUERIES if quick else None,
        "compositions": QUICK_QUERIES if quick else COMPOSITION_QUERIES,
    }
    column = {"uses": "Uses", "compositions": "Composition"}
    sets = {}
    for name, size in sizes.items():
        texts = quality.sample_distinct(medicines[column[name]], size, SEED)
        sets[name] = texts, _embed(texts, f"query-{name}-v1", embedder)
    return sets


@pytest.fixture(scope="module")
def report(quick: bool):
    """Collects every test's figures; the full run writes them to ``benchmarks/results/quality.*``."""
    results = {
        "k": K,
        "machine": machine_info(),
        "command": "python -m pytest benchmarks/test_bench_quality.py -q -s",
        "texts": {
            "medicines": "one per medicine: 'Name: {Medicine Name}. Composition: {Composition}. "
            "Uses: {Uses}. Side effects: {Side_effects}'",
            "side effects": "each distinct Side_effects string",
            "uses": "each distinct Uses string",
            "compositions": f"{COMPOSITION_QUERIES} distinct Composition strings drawn with seed {SEED}",
        },
        "recall_definition": "a hit is a returned row whose float32 score reaches the k-th best "
        f"float32 score within {quality.TIE_TOLERANCE}",
        "sentence_transformers": st_search.settings(),
        "models": {},
    }
    yield results
    complete = set(results["models"]) == set(MODELS) and all(
        model["ndcg"] is not None and len(model["recall"]) == len(CASES)
        for model in results["models"].values()
    )
    if quick or not complete:
        return  # only a complete full run replaces the recorded results
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / "quality.md").write_text(quality_report.markdown(results))
    print("\n" + quality_report.markdown(results))


def _model_entry(report: dict, embedder: embedders.Embedder) -> dict:
    entry = {"name": embedder.name, "dim": embedder.dim, "recall": [], "ndcg": None}
    return report["models"].setdefault(embedder.key, entry)


@pytest.mark.parametrize(("corpus", "queries"), CASES)
def test_recall_retention(embedder, corpora, query_sets, report, corpus: str, queries: str):
    if corpus not in corpora:
        pytest.skip(f"the {corpus} corpus runs only without --quick")
    corpus_f32, store = corpora[corpus]
    texts, queries_f32 = query_sets[queries]
    ids = quality.run_methods(store, corpus_f32, queries_f32, K, MULTIPLIERS)
    for m in MULTIPLIERS:  # rescoring only reorders the Hamming candidates
        candidates = ids[f"candidates x{m}"]
        for method in ("int8", "bits"):
            found = ids[f"{method} rescore x{m}"]
            assert (found[:, :, None] == candidates[:, None, :]).any(axis=2).all()
    summary = quality.recall_summary(ids, queries_f32, corpus_f32, MULTIPLIERS)
    for row in summary["multipliers"].values():  # float32 rescoring keeps every true neighbour
        assert row["float32 rescore"] == row["candidate recall"]
    _model_entry(report, embedder)["recall"].append(
        {
            "corpus": corpus,
            "corpus_rows": len(store),
            "queries": queries,
            "query_count": len(texts),
            **summary,
        }
    )
    row = summary["multipliers"][str(ASSERTED_MULTIPLIER)]
    print(
        f"\n{embedder.key}, {corpus} x {queries}: recall@{K} binary "
        f"{summary['recall']['binary']:.4f}, "
        + ", ".join(
            f"x{m} f32 {r['float32 rescore']:.4f} int8 {r['int8 rescore']:.4f} "
            f"(retention {r['int8 retention']:.4f})"
            for m, r in summary["multipliers"].items()
        )
    )
    assert row["int8 retention"] >= MIN_RETENTION, row


def test_ndcg_uses(embedder, corpora, query_sets, medicines, report):
    """Labelled task: a ``Uses`` string finds the medicines with exactly that use (binary relevance)."""
    corpus_f32, store = corpora["medicines"]
    texts, queries_f32 = query_sets["uses"]
    vocabulary = sorted(set(medicines["Uses"]))
    corpus_labels = quality.labels_of(medicines["Uses"], vocabulary)
    query_labels = quality.labels_of(texts, vocabulary)
    assert (query_labels >= 0).all()
    ids = quality.run_methods(store, corpus_f32, queries_f32, K, MULTIPLIERS)
    names = ["float32 exact", "int8 exact", "binary"]
    names += [f"{method} x{m}" for m in MULTIPLIERS for method in quality.RESCORED]
    ndcg = {name: quality.ndcg_at_k(ids[name], corpus_labels, query_labels) for name in names}
    _model_entry(report, embedder)["ndcg"] = {
        "task": "a medicine's Uses string retrieves the medicines with that exact Uses (binary relevance)",
        "corpus_rows": len(store),
        "query_count": len(texts),
        "multipliers": list(MULTIPLIERS),
        "ndcg": ndcg,
    }
    print(f"\n{embedder.key} NDCG@10: " + ", ".join(f"{n} {v:.4f}" for n, v in ndcg.items()))
