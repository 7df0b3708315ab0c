"""sentence-transformers' own quantized search on the quality benchmark's embeddings, as id arrays.

``sentence_transformers.util.quantization.semantic_search_faiss`` and ``semantic_search_usearch``
are called as their documentation suggests: the corpus quantized with ST's
``quantize_embeddings`` (int8/uint8 ranges from the whole corpus via ``calibration_embeddings``),
exact search, float32 queries, ``rescore=True`` and ``rescore_multiplier`` m: each searches its
quantized index for the top ``k * m``, then rescores those candidates with the float32 query
(against the unpacked 0/1 bits for ``ubinary``, the dequantized codes for ``int8``/``uint8``)
and keeps ``k``. Each index is built once and passed back as ``corpus_index``.
"""

from __future__ import annotations

import numpy as np

#: Method name -> (function, corpus precision). faiss has no int8 index: its scalar option is
#: ``uint8``, whose codes an ``IndexFlatIP`` scores as floats.
METHODS = {
    "st faiss ubinary": ("semantic_search_faiss", "ubinary"),
    "st faiss uint8": ("semantic_search_faiss", "uint8"),
    "st usearch ubinary": ("semantic_search_usearch", "ubinary"),
    "st usearch int8": ("semantic_search_usearch", "int8"),
}


def settings() -> dict:
    """What the ST methods ran with, for the results file."""
    from importlib.metadata import version

    return {
        "sentence_transformers": version("sentence-transformers"),
        "methods": {name: f"{fn}(corpus_precision={p!r})" for name, (fn, p) in METHODS.items()},
        "common": "exact=True, rescore=True, rescore_multiplier=m, "
        "calibration_embeddings=the corpus (int8/uint8), float32 queries",
    }


def _ids(results: list[list[dict]], k: int) -> np.ndarray:
    """ST's ``[[{"corpus_id", "score"}, ...], ...]`` as ``(q, k) int64`` ids."""
    if any(len(hits) != k for hits in results):
        raise AssertionError("a sentence-transformers search returned fewer than k rows")
    return np.array([[hit["corpus_id"] for hit in hits] for hits in results], dtype=np.int64)


class STSearch:
    """ST's search over one corpus ``(n, d) float32``; indexes are built on first use."""

    def __init__(self, corpus_f32: np.ndarray) -> None:
        self.corpus_f32 = corpus_f32
        self._indexes: dict[str, object] = {}

    def search(self, method: str, queries_f32: np.ndarray, k: int, multiplier: int) -> np.ndarray:
        """Top ``k`` ids ``(q, k) int64`` of ``method`` with rescoring of ``k * multiplier``."""
        from sentence_transformers.util import quantization

        function, precision = METHODS[method]
        kwargs = {
            "corpus_precision": precision,
            "top_k": k,
            "calibration_embeddings": self.corpus_f32,
            "rescore": True,
            "rescore_multiplier": multiplier,
            "exact": True,
        }
        if method in self._indexes:
            kwargs["corpus_index"] = self._indexes[method]
        else:
            kwargs["corpus_embeddings"] = quantization.quantize_embeddings(
                self.corpus_f32, precision, calibration_embeddings=self.corpus_f32
            )
        results, _, index = getattr(quantization, function)(
            queries_f32, output_index=True, **kwargs
        )
        self._indexes[method] = index
        return _ids(results, k)
