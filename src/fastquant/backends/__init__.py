"""Registry of exact Hamming top-k backends: fastquant's Numba kernel, NumPy, faiss and usearch.

Every backend follows ``base.HammingBackend`` and returns identical arrays (ties by ascending id),
so any of them can check another.
"""

from __future__ import annotations

from importlib import import_module

from ..validation import choice
from .base import HammingBackend, exact_ties

#: Backend name -> (module in this package, class).
_BACKENDS = {
    "numba": ("numba_backend", "NumbaBackend"),
    "numpy": ("numpy_backend", "NumpyBackend"),
    "faiss": ("faiss_backend", "FaissBackend"),
    "usearch": ("usearch_backend", "UsearchBackend"),
}

BACKEND_NAMES = tuple(_BACKENDS)


def get_backend(name: str) -> HammingBackend:
    """The backend called ``name``; ImportError, naming the extra to install, if its library is
    missing; ValueError (listing the names) for an unknown one."""
    choice("backend", name, BACKEND_NAMES)
    module_name, class_name = _BACKENDS[name]
    module = import_module(f".{module_name}", __name__)
    return getattr(module, class_name)()


def available_backends() -> list[str]:
    """Names of the backends whose library imports, in ``BACKEND_NAMES`` order."""
    names = []
    for name in BACKEND_NAMES:
        try:
            get_backend(name)
        except ImportError:
            continue
        names.append(name)
    return names


__all__ = ["BACKEND_NAMES", "HammingBackend", "available_backends", "exact_ties", "get_backend"]
