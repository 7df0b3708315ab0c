"""Retrieval quality on real embeddings: candidate scans, rescoring, and sentence-transformers'.

Usage::

    python benchmarks/quality.py           # every model and set (embeddings cached in .cache/)
    python benchmarks/quality.py --quick   # the first 1,000 medicines, 100 queries per set

Models (``lib/embedders.py``): all-MiniLM-L6-v2 (384-d) and WordLlama-256. Corpora: one text
per bundled medicine (11,825) and, without ``--quick``, the 1,512 distinct side-effect lists.
Queries are real texts that are not corpus rows: the distinct ``Uses`` strings and a sample of
distinct ``Composition`` strings. Each corpus goes into two stores calibrated on all its rows:
one of sign bits (fastquant 0.1's layout) and one of centred bits (the default).

For each rescore multiplier m:

- fastquant 0.1's route: the Hamming top 10m of the sign bits, rescored three ways (by the store
  with int8 codes, by the store with the bits, here with the original float32 vectors);
- every other candidate scan (``lib/retrieval.SCANS``: the asymmetric scan of the centred store,
  the default; the asymmetric scan of sign bits; the Hamming list narrowed by the asymmetric
  score; Hamming distances of centred bits) and faiss's ``IndexRaBitQ`` and
  ``IndexRaBitQFastScan`` with 4-bit queries, each followed by the same int8 rescoring;
- sentence-transformers' ``semantic_search_faiss`` / ``semantic_search_usearch`` on the same
  embeddings with the same m (``lib/st_search.py``).

Recall@10 is against exact float32 search; NDCG@10 is on a labelled task (a ``Uses`` string
finds the medicines with exactly that use).

Checks: rescoring only reorders the Hamming candidates; float32 rescoring keeps every true
neighbour among them; and the criterion int8 rescoring was built to: at m = 4 it keeps at
least 99% of the recall@10 that float32 rescoring of the same candidates reaches.
"""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from fastquant.store import CorpusStore
from lib import embedders, record, retrieval, st_search

K = 10
MULTIPLIERS = (1, 2, 4, 10)
CHECKED_MULTIPLIER, MIN_RETENTION = 4, 0.99
QUICK_ROWS, QUICK_QUERIES = 1_000, 100
COMPOSITION_QUERIES = 500
SEED = 20261121
CASES = [("medicines", "uses"), ("medicines", "compositions"), ("side effects", "uses")]
TEXTS = {
    "medicines": "one per medicine: 'Name: {Medicine Name}. Composition: {Composition}. "
    "Uses: {Uses}. Side effects: {Side_effects}'",
    "side effects": "each distinct Side_effects string",
    "uses": "each distinct Uses string",
    "compositions": f"{COMPOSITION_QUERIES} distinct Composition strings drawn with seed {SEED}",
}


def embed(texts: list[str], recipe: str, embedder: embedders.Embedder) -> np.ndarray:
    """``embedders.embed``; exits as skipped when the texts are new and the model is missing."""
    try:
        return embedders.embed(texts, recipe, embedder)
    except ImportError as error:
        print(f"SKIPPED: cannot embed {len(texts)} new texts with {embedder.name}: {error}")
        sys.exit(record.SKIPPED)


def corpora(medicines: dict, embedder: embedders.Embedder, quick: bool, work: Path) -> dict:
    """``{name: (corpus_f32 (n, dim), {bits: store})}``: a store of sign bits and one of centred
    bits (both calibrated on the whole corpus), holding the rows in id order."""
    texts = {"medicines": (retrieval.medicine_texts(medicines), retrieval.MEDICINE_RECIPE)}
    if not quick:
        side_effects = retrieval.sample_distinct(medicines["Side_effects"], None, SEED)
        texts["side effects"] = (side_effects, "side-effects-v1")
    built = {}
    for name, (rows, recipe) in texts.items():
        corpus_f32 = embed(rows, recipe, embedder)
        stores = {}
        for bits in ("sign", "centred"):
            path = work / f"{embedder.key}-{name.replace(' ', '-')}-{bits}"
            stores[bits] = CorpusStore.create(
                path, embedder.dim, calibration_embeddings=corpus_f32, bits=bits
            )
            stores[bits].append(corpus_f32)
        built[name] = corpus_f32, stores
    return built


def query_sets(medicines: dict, embedder: embedders.Embedder, quick: bool) -> dict:
    """``{name: (texts, queries_f32)}``: distinct uses and a sample of compositions."""
    sizes = {"uses": None, "compositions": COMPOSITION_QUERIES}
    column = {"uses": "Uses", "compositions": "Composition"}
    sets = {}
    for name, size in sizes.items():
        texts = retrieval.sample_distinct(
            medicines[column[name]], QUICK_QUERIES if quick else size, SEED
        )
        sets[name] = texts, embed(texts, f"query-{name}-v1", embedder)
    return sets


def check(exact: dict, by_multiplier: dict, recall_by_multiplier: dict) -> None:
    """The checks of the module docstring, on one case's ids and recall."""
    for m, candidates in by_multiplier["candidates"].items():
        for method in ("int8 rescore", "bits rescore"):
            found = by_multiplier[method][m]
            if not (found[:, :, None] == candidates[:, None, :]).any(axis=2).all():
                raise AssertionError(f"{method} x{m} returned a row outside the candidates")
    if recall_by_multiplier["float32 rescore"] != recall_by_multiplier["candidates"]:
        raise AssertionError("float32 rescoring lost a true neighbour among the candidates")
    m = str(CHECKED_MULTIPLIER)
    retention = recall_by_multiplier["int8 rescore"][m] / recall_by_multiplier["float32 rescore"][m]
    if retention < MIN_RETENTION:
        raise AssertionError(f"int8 rescoring keeps {retention:.4f} of float32's recall at x{m}")


def measure_model(medicines: dict, embedder: embedders.Embedder, quick: bool, work: Path) -> dict:
    """Recall of every case and NDCG of the labelled task for one model."""
    stores, queries = (
        corpora(medicines, embedder, quick, work),
        query_sets(medicines, embedder, quick),
    )
    entry = {"name": embedder.name, "dim": embedder.dim, "cases": []}
    for corpus, query_set in CASES:
        if corpus not in stores:
            continue
        corpus_f32, kinds = stores[corpus]
        store = kinds["sign"]
        texts, queries_f32 = queries[query_set]
        exact, by_multiplier = retrieval.run_methods(kinds, corpus_f32, queries_f32, K, MULTIPLIERS)
        recall, recall_by_multiplier = retrieval.evaluate(
            partial(
                retrieval.recall_at_k,
                truth=exact["float32 exact"],
                queries_f32=queries_f32,
                corpus_f32=corpus_f32,
            ),
            exact,
            by_multiplier,
        )
        check(exact, by_multiplier, recall_by_multiplier)
        entry["cases"].append(
            {
                "corpus": corpus,
                "corpus_rows": len(store),
                "queries": query_set,
                "query_count": len(texts),
                "recall": recall,
                "recall_by_multiplier": recall_by_multiplier,
            }
        )
        print(f"{embedder.key}, {corpus} x {query_set}: recall@{K} {recall}", flush=True)
        if (corpus, query_set) == ("medicines", "uses"):
            vocabulary = sorted(set(medicines["Uses"]))
            corpus_labels = retrieval.labels_of(medicines["Uses"], vocabulary)
            query_labels = retrieval.labels_of(texts, vocabulary)
            assert (query_labels >= 0).all(), "a Uses query is not any medicine's Uses"
            del by_multiplier["candidates"]  # k * m rows: NDCG@k is for k rows
            ndcg, ndcg_by_multiplier = retrieval.evaluate(
                partial(
                    retrieval.ndcg_at_k, corpus_labels=corpus_labels, query_labels=query_labels
                ),
                exact,
                by_multiplier,
            )
            entry["ndcg"] = {
                "task": "a medicine's Uses string retrieves the medicines with that exact Uses "
                "(binary relevance)",
                "corpus_rows": len(store),
                "query_count": len(texts),
                "ndcg": ndcg,
                "ndcg_by_multiplier": ndcg_by_multiplier,
            }
    return entry


def main(argv: list[str] | None = None) -> int:
    args = record.parser(__doc__).parse_args(argv)
    record.require("faiss", "usearch", "sentence_transformers")
    run = record.Run("quality", args, argv)
    medicines = retrieval.read_medicines(QUICK_ROWS if args.quick else None)
    with tempfile.TemporaryDirectory(prefix="fastquant-quality-") as work:
        models = {
            key: measure_model(medicines, embedder, args.quick, Path(work))
            for key, embedder in embedders.EMBEDDERS.items()
        }
    cases = models[next(iter(models))]["cases"]
    run.save(
        threads="any (results do not depend on threads)",
        shapes={
            "k": K,
            "rescore multipliers": list(MULTIPLIERS),
            "corpus rows": {case["corpus"]: case["corpus_rows"] for case in cases},
            "queries": {case["queries"]: case["query_count"] for case in cases},
        },
        texts=TEXTS,
        recall_definition="a hit is a returned row whose float32 score reaches the k-th best "
        f"float32 score within {retrieval.TIE_TOLERANCE}",
        sentence_transformers=st_search.settings(),
        models=models,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
