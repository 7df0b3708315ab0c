"""fastquant's search engine on validated arrays: the layer between the public API and the kernels.

Nothing here checks its arguments: the public functions (``hamming.py``, ``rescore.py``,
``CorpusStore``) validate them with ``fastquant.validation`` and call this layer, which calls the
jitted kernels of ``fastquant._kernels``. ``fastquant.distributed`` uses the same interface to
split one search across shards, so a sharded answer is computed by the very code of a single
store's answer:

- :class:`ChunkedCorpus`: a corpus as chunks of bits and int8 codes, row ids, allowed rows;
- :func:`candidates` (:func:`hamming_candidates`, :func:`plane_queries` and the asymmetric scan),
  :func:`merge_sorted`: the first stage and exact merging of top lists;
- :func:`score_int8`, :func:`score_bits`, :func:`top_by_score`, :func:`exact_int8`: the second stage;
- :func:`search`: both stages as ``CorpusStore.search`` runs them.
"""

from .asymmetric import ASYMMETRIC_BACKENDS, PlaneQueries, plane_queries
from .corpus import ChunkedCorpus, chunk_segments, prefetch_rows
from .scan import FAR_DISTANCE, hamming_candidates, merge_sorted
from .score import exact_int8, no_results, score_bits, score_int8, top_by_score
from .search import (
    COARSE_WIDTH,
    DEFAULT_BACKEND,
    DEFAULT_K,
    DEFAULT_RESCORE_MULTIPLIER,
    DEFAULT_SCAN,
    GATHER_FRACTION,
    NARROWING_WIDTH,
    RESCORE_MODES,
    SCANS,
    FirstPass,
    candidates,
    finish,
    first_pass,
    first_pass_width,
    query_bits,
    search,
)

__all__ = [
    "ASYMMETRIC_BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_K",
    "DEFAULT_RESCORE_MULTIPLIER",
    "DEFAULT_SCAN",
    "FAR_DISTANCE",
    "COARSE_WIDTH",
    "FirstPass",
    "GATHER_FRACTION",
    "NARROWING_WIDTH",
    "PlaneQueries",
    "RESCORE_MODES",
    "SCANS",
    "ChunkedCorpus",
    "candidates",
    "chunk_segments",
    "exact_int8",
    "finish",
    "first_pass",
    "first_pass_width",
    "hamming_candidates",
    "merge_sorted",
    "no_results",
    "plane_queries",
    "prefetch_rows",
    "query_bits",
    "score_bits",
    "score_int8",
    "search",
    "top_by_score",
]
