"""Retrieval quality on real embeddings: the bundled medicine texts, the methods and the metrics.

Embeddings come from ``embedders.py`` (all-MiniLM-L6-v2 and WordLlama-256, cached). Ground truth
is the exact float32 top ``k`` by dot product. Recall counts a returned row as a hit when its
float32 score reaches the ``k``-th best float32 score (within ``TIE_TOLERANCE``), so a tie at
the cut, such as the corpus's repeated medicine texts, costs no method any recall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lib.st_search import METHODS as ST_METHODS
from lib.st_search import STSearch

#: Two float32 scores closer than this are a tie: identical rows can differ in the last bits
#: when summed in a different order.
TIE_TOLERANCE = 1e-6

#: How one medicine becomes one corpus text (bump the name when the format changes).
MEDICINE_RECIPE = "medicine-row-v1"


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

#: Candidate scans compared, each followed by the same int8 rescoring of its top ``k * m``:
#: name -> (the store's kind of bits, its ``scan=``), or a faiss index (``faiss_candidates``).
SCANS = {
    "asymmetric": ("centred", "asymmetric"),
    "asymmetric-exact": ("centred", "asymmetric-exact"),
    "asymmetric, sign bits": ("sign", "asymmetric"),
    "hamming+asymmetric": ("centred", "hamming+asymmetric"),
    "hamming, centred bits": ("centred", "hamming"),
}
FAISS_SCANS = {"faiss RaBitQ": "IndexRaBitQ", "faiss RaBitQ FastScan": "IndexRaBitQFastScan"}
#: faiss's query bits (``RaBitQSearchParameters.qb``), as fastquant's 4-bit queries.
FAISS_QUERY_BITS = 4

#: Methods run once per rescore multiplier m, in report order: the Hamming top ``k * m`` of sign
#: bits (``candidates``: fastquant 0.1's scan), those candidates rescored three ways,
#: sentence-transformers' searches, then every other candidate scan with int8 rescoring.
BY_MULTIPLIER = [
    "candidates", "float32 rescore", "int8 rescore", "bits rescore", *ST_METHODS, *SCANS,
    *FAISS_SCANS,
]  # fmt: skip

Ids = dict[str, np.ndarray]


def faiss_candidates(corpus_f32: np.ndarray, index: str):
    """``search(queries, count) -> ids (q, count)`` of a faiss RaBitQ index of ``corpus_f32``
    (centre from the corpus, queries quantized to ``FAISS_QUERY_BITS`` bits)."""
    import faiss

    built = getattr(faiss, index)(corpus_f32.shape[1], faiss.METRIC_INNER_PRODUCT)
    built.train(corpus_f32)
    built.add(corpus_f32)
    params = None
    if index == "IndexRaBitQ":
        params = faiss.RaBitQSearchParameters()
        params.qb = FAISS_QUERY_BITS
    else:
        built.qb = FAISS_QUERY_BITS

    def search(queries_f32: np.ndarray, count: int) -> np.ndarray:
        return built.search(queries_f32, count, params=params)[1].astype(np.int64)

    return search


def run_methods(
    stores: dict,
    corpus_f32: np.ndarray,
    queries_f32: np.ndarray,
    k: int,
    multipliers: Sequence[int],
) -> tuple[Ids, dict[str, Ids]]:
    """Top-k ids ``(q, k) int64`` of every method: ``{name: ids}`` and ``{name: {"m": ids}}``.

    ``stores`` maps a kind of bits (``"sign"``, ``"centred"``) to a
    :class:`~fastquant.store.CorpusStore` holding ``corpus_f32`` in id order with the same int8
    ranges. Without a multiplier: ``float32 exact``, ``int8 exact``, ``binary`` (Hamming order of
    sign bits), ``asymmetric`` (asymmetric order of centred bits), no rescoring. By multiplier:
    ``BY_MULTIPLIER`` (``candidates`` are ``(q, k * m)``).
    """
    from fastquant import rescore_int8

    sign, centred = stores["sign"], stores["centred"]
    exact = {
        "float32 exact": exact_topk(queries_f32, corpus_f32, k),
        "int8 exact": sign.exact_search(queries_f32, k)[1],
        "binary": sign.search(queries_f32, k, scan="hamming", rescore="none")[1],
        "asymmetric": centred.search(queries_f32, k, rescore="none")[1],
    }
    codes = np.concatenate(sign.snapshot.corpus.codes)
    faiss_scans = {name: faiss_candidates(corpus_f32, index) for name, index in FAISS_SCANS.items()}
    by_multiplier: dict[str, Ids] = {name: {} for name in BY_MULTIPLIER}
    st = STSearch(corpus_f32)
    for m in multipliers:
        row = {"candidates": sign.search(queries_f32, k * m, scan="hamming", rescore="none")[1]}
        row["float32 rescore"] = rescore_f32(queries_f32, corpus_f32, row["candidates"], k)
        for rescore in ("int8", "bits"):
            row[f"{rescore} rescore"] = sign.search(
                queries_f32, k, scan="hamming", rescore=rescore, rescore_multiplier=m
            )[1]
        row.update({method: st.search(method, queries_f32, k, m) for method in ST_METHODS})
        for name, (kind, scan) in SCANS.items():
            row[name] = stores[kind].search(queries_f32, k, scan=scan, rescore_multiplier=m)[1]
        for name, search in faiss_scans.items():
            found = search(queries_f32, k * m)
            row[name] = rescore_int8(codes, queries_f32, found, k, calibration=sign.calibration)[1]
        for name, ids in row.items():
            by_multiplier[name][str(m)] = ids
    return exact, by_multiplier


def evaluate(
    metric: Callable[[np.ndarray], float], exact: Ids, by_multiplier: dict[str, Ids]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``metric(ids)`` of every method of ``run_methods``, in the same two dictionaries."""
    return (
        {name: metric(ids) for name, ids in exact.items()},
        {name: {m: metric(ids) for m, ids in row.items()} for name, row in by_multiplier.items()},
    )
