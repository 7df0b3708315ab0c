"""fastquant: quantized embedding search with Numba kernels cross-validated against faiss and usearch.

Public API:
    quantize_embeddings, Calibration       float -> int8 / uint8 / packed bits (sentence-transformers compatible)
    centred_bits                           bits of x > centre with the row factors of asymmetric search
    hamming_topk, compare_backends         exact Hamming top-k on numba / numpy / faiss / usearch
    asymmetric_topk                        exact top-k of packed bits against 4-bit queries
    rescore_int8, rescore_bits, int8_topk  float32 queries against int8 codes or bits
    CorpusStore                            chunked, memory-mapped, crash-safe store searched in place

Each name (and each submodule, ``fastquant.store``) loads on first use, so ``import fastquant``
and the ``fastquant`` command start at once: NumPy, Numba and the kernels load when needed.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing itself is not imported: ``import fastquant`` must stay instant
if TYPE_CHECKING:
    from typing import Any

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

#: Public name -> the module that defines it.
_HOMES = {
    "asymmetric_topk": ".asymmetric",
    "BackendComparison": ".hamming",
    "compare_backends": ".hamming",
    "hamming_topk": ".hamming",
    "Calibration": ".quantize",
    "centred_bits": ".quantize",
    "quantize_embeddings": ".quantize",
    "int8_topk": ".rescore",
    "rescore_bits": ".rescore",
    "rescore_int8": ".rescore",
    "CorpusStore": ".store",
    "StoreCorruptedError": ".store",
    "StoreError": ".store",
    "StoreLockedError": ".store",
    "StoreNotFoundError": ".store",
    "StoreVersionError": ".store",
    "StoreWriteError": ".store",
}

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


def __getattr__(name: str) -> Any:
    """Load a public name, or a submodule, on first use (PEP 562)."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
