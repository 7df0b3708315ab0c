"""fastquant's search engine on validated arrays: the layer between the public API and the kernels.

Nothing here checks its arguments: the public functions (``hamming.py``, ``rescore.py``,
``CorpusStore``) validate them with ``fastquant.validation`` and call this layer, which calls the
jitted kernels of ``fastquant._kernels``. ``fastquant.distributed`` uses the same interface to
split one search across shards, so a sharded answer is computed by the very code of a single
store's answer:

- :class:`ChunkedCorpus`: a corpus as chunks of bits and int8 codes with global ids;
- :func:`hamming_candidates`, :func:`merge_sorted`: the first stage and exact merging of top lists;
- :func:`score_int8`, :func:`score_bits`, :func:`top_by_score`, :func:`exact_int8`: the second stage;
- :func:`search`: both stages as ``CorpusStore.search`` runs them.
"""

from .corpus import ChunkedCorpus, chunk_segments, prefetch_rows
from .scan import FAR_DISTANCE, hamming_candidates, merge_sorted
from .score import exact_int8, no_results, score_bits, score_int8, top_by_score
from .search import (
    DEFAULT_BACKEND,
    DEFAULT_K,
    DEFAULT_RESCORE_MULTIPLIER,
    RESCORE_MODES,
    search,
)

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_K",
    "DEFAULT_RESCORE_MULTIPLIER",
    "FAR_DISTANCE",
    "RESCORE_MODES",
    "ChunkedCorpus",
    "chunk_segments",
    "exact_int8",
    "hamming_candidates",
    "merge_sorted",
    "no_results",
    "prefetch_rows",
    "score_bits",
    "score_int8",
    "search",
    "top_by_score",
]
