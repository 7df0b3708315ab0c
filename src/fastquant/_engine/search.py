"""The whole route of a search: the candidate scan, then rescoring of the candidates, then top k."""

from __future__ import annotations

import numpy as np

from ..quantize import quantize_checked
from .corpus import ChunkedCorpus
from .scan import hamming_candidates
from .score import no_results, score_bits, score_int8, top_by_score

#: How candidates are rescored: against their int8 codes, their bits (BPR), or not at all.
RESCORE_MODES = ("int8", "bits", "none")

#: Defaults of every search entry point (``CorpusStore.search``, ``TextIndex.search``, the CLI,
#: ``fastquant.distributed.search``).
DEFAULT_K = 10
DEFAULT_RESCORE_MULTIPLIER = 4
DEFAULT_BACKEND = "numba"


def search(
    corpus: ChunkedCorpus,
    queries: np.ndarray,
    k: int,
    *,
    rescore: str,
    rescore_multiplier: int,
    backend: str,
    threads: int,
    prefetch: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``min(k, rows)`` of validated ``queries (q, dim) float32``: scores, ids ``(q, k')``.

    The Hamming scan keeps ``k * rescore_multiplier`` candidates (``k`` with ``rescore="none"``,
    whose scores are ``dim - 2 * distance``), which are rescored and cut to ``k``.
    """
    if corpus.rows == 0:
        return no_results(queries.shape[0])
    multiplier = 1 if rescore == "none" else rescore_multiplier
    query_bits = quantize_checked(queries, "ubinary", None)
    distances, candidates = hamming_candidates(corpus, query_bits, k * multiplier, backend, threads)
    if rescore == "none":
        return (corpus.dim - 2 * distances).astype(np.float32), candidates
    if rescore == "bits":
        scores = score_bits(corpus, queries, candidates, threads=threads)
    else:
        scores = score_int8(corpus, queries, candidates, threads=threads, prefetch=prefetch)
    return top_by_score(scores, candidates, min(k, candidates.shape[1]))
