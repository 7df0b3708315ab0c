"""fastquant: quantized embedding search with Numba kernels cross-validated against faiss and usearch.

Public API:
    quantize_embeddings, Calibration       float -> int8 / uint8 / packed bits (sentence-transformers compatible)
    centred_bits                           bits of x > centre with the row factors of asymmetric search
    hamming_topk, compare_backends         exact Hamming top-k on numba / numpy / faiss / usearch
    asymmetric_topk                        exact top-k of packed bits against 4-bit queries
    rescore_int8, rescore_bits, int8_topk  float32 queries against int8 codes or bits
    CorpusStore                            chunked, memory-mapped, crash-safe store searched in place
"""

from .asymmetric import asymmetric_topk
from .hamming import BackendComparison, compare_backends, hamming_topk
from .quantize import Calibration, centred_bits, quantize_embeddings
from .rescore import int8_topk, rescore_bits, rescore_int8
from .store import (
    CorpusStore,
    StoreCorruptedError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
    StoreVersionError,
    StoreWriteError,
)

__all__ = [
    "BackendComparison",
    "Calibration",
    "CorpusStore",
    "StoreCorruptedError",
    "StoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreVersionError",
    "StoreWriteError",
    "asymmetric_topk",
    "centred_bits",
    "compare_backends",
    "hamming_topk",
    "int8_topk",
    "quantize_embeddings",
    "rescore_bits",
    "rescore_int8",
]
__version__ = "0.1.0"
