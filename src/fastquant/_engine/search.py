"""The whole route of a search: the candidate scan, then rescoring of the candidates, then top k.

Scans (``scan=``):

- ``"asymmetric"`` (default): the coarse scan ranks every row by the integer total of its bits
  against the query quantized to ternary values (``-1, 0, 1``: one digit, a third of the
  popcounts of the 4-bit score; no row factors, so integer keys like Hamming's) and keeps the top
  ``COARSE_WIDTH`` times the candidates, which are narrowed by their exact asymmetric score
  (:mod:`.asymmetric`, the 4-bit query against the stored bits and factors);
- ``"asymmetric-exact"``: every row's exact asymmetric score;
- ``"hamming"``: Hamming distance between the query's bits and the rows' (fastquant 0.1's scan);
- ``"hamming+asymmetric"``: the Hamming top ``NARROWING_WIDTH`` times the candidates, narrowed
  by their asymmetric scores.

Each is exact in what it computes (top lists over the whole corpus, ties by ascending id), so an
answer depends on nothing but the data, the query and the scan: not on chunking, threads,
backend, the batch a query comes in, or a corpus split into shards.

Each keeps ``k * rescore_multiplier`` candidates (``k`` with ``rescore="none"``), which are
rescored (int8 codes, or bits) and cut to ``k``.

Rows a corpus does not allow (deleted, or outside a filter) never enter a top list: the answer is
the one a corpus of the allowed rows alone would give. When they are at most
``GATHER_FRACTION`` of the rows, the scan scores only them (gathered by position) instead of
reading every row; both routes give the same scores, so the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .asymmetric import asymmetric_keys, plane_queries, score_asymmetric
from .corpus import ChunkedCorpus
from .scan import gathered_distances, hamming_candidates
from .score import no_results, score_bits, score_int8, top_by_score

#: How candidates are rescored: against their int8 codes, their bits (BPR), or not at all.
RESCORE_MODES = ("int8", "bits", "none")
#: How candidates are found; see the module docstring.
SCANS = ("asymmetric", "asymmetric-exact", "hamming", "hamming+asymmetric")
#: The coarse stage of ``"asymmetric"`` keeps this many times the candidates (measured in
#: ``benchmarks/quality.py`` and ``benchmarks/asymmetric.py``).
COARSE_WIDTH = 4
#: The Hamming stage of ``"hamming+asymmetric"`` keeps this many times the candidates.
NARROWING_WIDTH = 10

#: A corpus whose searchable rows are at most this fraction of its rows is scanned by scoring
#: those rows alone (measured in ``benchmarks/mutable.py``).
GATHER_FRACTION = 1 / 32
#: Scores the gathered scan holds at a time (queries x rows).
_GATHER_PAIRS = 1 << 22

#: Defaults of every search entry point (``CorpusStore.search``, ``TextIndex.search``, the CLI,
#: ``fastquant.distributed.search``).
DEFAULT_K = 10
DEFAULT_RESCORE_MULTIPLIER = 4
DEFAULT_BACKEND = "numba"
DEFAULT_SCAN = "asymmetric"


def query_bits(corpus: ChunkedCorpus, queries: np.ndarray) -> np.ndarray:
    """``(q, ceil(dim / 8)) uint8`` bits of ``queries`` made like the corpus's: ``q > centre``."""
    centre = 0 if corpus.centre is None else corpus.centre
    return np.packbits(queries > centre, axis=1)


@dataclass(frozen=True)
class FirstPass:
    """A scan's top list before narrowing: ``keys (q, c) float32`` ascending, the negated scan
    scores (Hamming: ``2 * distance - dim``), ``ids (q, c) int64`` (ties by ascending id) and, for
    the scans that narrow, the exact asymmetric scores ``narrow (q, c) float32`` of those ids.

    The top list of a union of corpora is the merge of their top lists by ``(key, id)``, so
    shards can each scan and a client merge (``fastquant.distributed``).
    """

    keys: np.ndarray
    ids: np.ndarray
    narrow: np.ndarray | None = None


def first_pass_width(scan: str, count: int) -> int:
    """How many rows ``scan``'s first pass keeps to end with ``count`` candidates."""
    return count * {"asymmetric": COARSE_WIDTH, "hamming+asymmetric": NARROWING_WIDTH}.get(scan, 1)


def first_pass(
    corpus: ChunkedCorpus, queries: np.ndarray, count: int, scan: str, backend: str, threads: int
) -> FirstPass:
    """The scan of :func:`candidates` (a corpus with searchable rows), before the scans that
    narrow cut it to ``count``."""
    gathered = corpus.filtered and corpus.searchable_rows <= GATHER_FRACTION * corpus.rows
    wide = first_pass_width(scan, count)
    if scan.startswith("asymmetric"):
        coarse = scan == "asymmetric"
        planes = plane_queries(queries, corpus.centre, coarse)
        if gathered:
            scores, ids = _gathered_top(
                corpus,
                planes.count,
                wide,
                lambda lo, hi, ids: score_asymmetric(corpus, planes[lo:hi], ids, coarse),
            )
            keys = -scores
        else:
            keys, ids = asymmetric_keys(corpus, planes, wide, backend, threads, coarse)
        return FirstPass(keys, ids, score_asymmetric(corpus, planes, ids) if coarse else None)
    bits = query_bits(corpus, queries)
    if gathered:

        def hamming_scores(lo: int, hi: int, ids: np.ndarray) -> np.ndarray:
            distances = gathered_distances(corpus, bits[lo:hi], ids[0])
            return (corpus.dim - 2 * distances).astype(np.float32)

        scores, ids = _gathered_top(corpus, bits.shape[0], wide, hamming_scores)
        keys = -scores
    else:
        distances, ids = hamming_candidates(corpus, bits, wide, backend, threads)
        keys = (2 * distances - corpus.dim).astype(np.float32)
    if scan == "hamming":
        return FirstPass(keys, ids)
    return FirstPass(
        keys, ids, score_asymmetric(corpus, plane_queries(queries, corpus.centre, False), ids)
    )


def _gathered_top(
    corpus: ChunkedCorpus,
    q: int,
    count: int,
    score: Callable[[int, int, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``count`` of the allowed rows alone for ``q`` queries: ``scores (q, c) float32``
    descending, ``ids (q, c) int64``. ``score(lo, hi, ids)`` scores queries ``lo:hi`` against
    ``ids (hi - lo, m)``, every row the allowed positions; a block of queries at a time."""
    positions = corpus.allowed_positions()
    block = max(1, _GATHER_PAIRS // max(1, positions.size))
    parts = []
    for lo in range(0, q, block):
        hi = min(q, lo + block)
        ids = np.tile(positions, (hi - lo, 1))
        parts.append(top_by_score(score(lo, hi, ids), ids, min(count, positions.size)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def finish(found: FirstPass, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``scores, ids (q, min(count, c))`` of a first pass: narrowed by ``narrow`` if it has one."""
    if found.narrow is None:
        return -found.keys[:, :count], found.ids[:, :count]
    return top_by_score(found.narrow, found.ids, min(count, found.ids.shape[1]))


def candidates(
    corpus: ChunkedCorpus, queries: np.ndarray, count: int, scan: str, backend: str, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first stage: ``scores (q, c) float32`` descending and ``ids (q, c) int64``,
    ``c = min(count, searchable rows)``, ties by ascending id. Hamming scores are ``dim - 2 * distance``."""
    return finish(first_pass(corpus, queries, count, scan, backend, threads), count)


def search(
    corpus: ChunkedCorpus,
    queries: np.ndarray,
    k: int,
    *,
    scan: str,
    rescore: str,
    rescore_multiplier: int,
    backend: str,
    threads: int,
    prefetch: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``min(k, searchable rows)`` of validated ``queries (q, dim) float32``: scores, ids
    ``(q, k')`` (positions).

    ``backend`` runs the scan: any Hamming engine for ``"hamming"`` (and the Hamming stage of
    ``"hamming+asymmetric"``), ``"numba"`` or ``"numpy"`` for ``"asymmetric"``.
    """
    if corpus.searchable_rows == 0:
        return no_results(queries.shape[0])
    multiplier = 1 if rescore == "none" else rescore_multiplier
    scores, found = candidates(corpus, queries, k * multiplier, scan, backend, threads)
    if rescore == "none":
        return scores, found
    if rescore == "bits":
        scores = score_bits(corpus, queries, found, threads=threads)
    else:
        scores = score_int8(corpus, queries, found, threads=threads, prefetch=prefetch)
    return top_by_score(scores, found, min(k, found.shape[1]))
