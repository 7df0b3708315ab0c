"""A sentence-transformers BERT model on ONNX Runtime: Rust tokenizer, transformer, pooling.

Reproduces what sentence-transformers computes for a ``Transformer -> Pooling -> Normalize``
folder such as all-MiniLM-L6-v2: ``tokenizer.json`` truncated at the folder's
``max_seq_length``, the exported transformer (:mod:`fastquant.onnx_export`), mean pooling over
the tokens as ``1_Pooling/config.json`` asks, and L2 normalization (the norm clamped at 1e-12,
as ``torch.nn.functional.normalize`` does).

Each text runs on its own: no padding, and, for an int8 model, an activation scale of its own.
onnxruntime's dynamic quantization scales activations per tensor, so a text run in a batch
gets a scale set by its neighbours and their padding (measured: 0.9917 mean cosine between the
same texts run alone and in batches of 32), which would make a row's embedding depend on the
rows beside it. Runs of one text were as fast as batches on 2 cores (``benchmarks/encoders.py``).
Texts run in parallel, one per thread, each on one onnxruntime thread: a short text's small
matrix products gain little from being split across cores, so this was 1.1-1.6x faster than one
text at a time on two intra-op threads (measured with the machine busy), with the very same
numbers (each run is the same single-threaded computation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from .encoders import ModelNotAvailableError

_POOLING = "1_Pooling/config.json"


class OnnxEncoder:
    """Texts to ``(n, dim) float32`` unit vectors with an ONNX transformer of ``model_folder``.

    ``threads`` texts run at once (default: one per core available), each on one onnxruntime
    thread. Idle threads sleep rather than spin, so they leave the cores to the quantizing and
    storing that follow each batch in ``index_file``.
    """

    def __init__(
        self,
        model_file: Path,
        model_folder: Path,
        *,
        name: str,
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.dim, max_length = _pooling_dim_and_max_length(model_folder, name)
        self._tokenizer = Tokenizer.from_file(str(model_folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.no_padding()
        self.threads = threads or len(os.sched_getaffinity(0))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim) float32`` embeddings with unit L2 norm (an empty text included)."""
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        mapped = map if self.threads == 1 else self._threads().map
        for row, pooled in enumerate(mapped(self._embed, encodings)):
            vectors[row] = pooled
        return normalize_rows(vectors)

    def _threads(self) -> ThreadPoolExecutor:
        """This process's pool of ``threads`` (a forked child starts its own: threads do not
        survive a fork)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool, self._pool_pid = ThreadPoolExecutor(self.threads), os.getpid()
        return self._pool

    def _embed(self, encoding) -> np.ndarray:
        """The mean of one text's token vectors ``(dim,) float32`` (onnxruntime releases the GIL)."""
        input_ids = np.array([encoding.ids], dtype=np.int64)  # [CLS] ... [SEP]: never empty
        (hidden,) = self._session.run(
            None, {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
        )
        return hidden[0].mean(axis=0)  # (tokens, dim): every token is unmasked


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors (n, d)`` divided by their L2 norms, in place; norms below 1e-12 count as 1e-12."""
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def _pooling_dim_and_max_length(folder: Path, name: str) -> tuple[int, int]:
    """The embedding dimension and token limit of ``folder``; only mean pooling is supported."""
    try:
        pooling = json.loads((folder / _POOLING).read_text())
        max_length = json.loads((folder / "sentence_bert_config.json").read_text())[
            "max_seq_length"
        ]
    except (OSError, ValueError, KeyError) as error:
        raise ModelNotAvailableError(
            f"model {name!r}: cannot read the pooling or max_seq_length of {folder}: {error}"
        ) from error
    modes = sorted(key for key, on in pooling.items() if key.startswith("pooling_mode_") and on)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ModelNotAvailableError(
            f"model {name!r}: {folder / _POOLING} asks for {modes}; only mean pooling is supported"
        )
    return int(pooling["word_embedding_dimension"]), int(max_length)
