"""A sentence-transformers BERT folder exported to ONNX, optionally int8, offline and cached.

``cached_onnx_model(model_folder, quantization, package=..., cache_dir=...)`` returns the
``model.onnx`` built from ``model_folder`` into ``cache_dir``, exporting it on first use (about
10 s):

- ``torch.onnx.export`` (the TorchScript exporter, opset 17) traces the transformer alone,
  ``last_hidden_state`` out, with dynamic batch and sequence axes; pooling and normalization
  stay outside (``onnx_encoder.py``), where the model folder's own configuration drives them;
- ``"int8"``: onnxruntime's ``quantize_dynamic`` with int8 weights quantized **per output
  channel** (activations are quantized per tensor at run time), except ``FLOAT_MATMULS``.
  Per-tensor weights were measured here at 0.948 mean cosine to the float model, per-channel
  at 0.9925-0.9930, per-channel with ``FLOAT_MATMULS`` in float32 at 0.9961.

The export needs torch and transformers (the ``[text]`` extra); running it needs only
onnxruntime and tokenizers. The cache folder is keyed by the model package's version,
onnxruntime's version and the quantization (see :mod:`fastquant.build_cache`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import onnxruntime

from .build_cache import cached_folder

QUANTIZATIONS = ("fp32", "int8")
MODEL_FILE = "model.onnx"
#: Matrix products that stay float32 in the int8 model: the feed-forward output projections of
#: the first three layers (input: the GELU output, whose outliers make a per-tensor int8 scale
#: coarse). Keeping them float32 raised the mean cosine to the float model from 0.9930 to 0.9961
#: (each later layer mattered less) and kept NDCG@10 >= 99% of torch's on the labelled quality
#: sets; they are 3 of the 36 products, 1/6 of the multiply-adds (``benchmarks/encoders.py``).
FLOAT_MATMULS = tuple(f"/model/encoder/layer.{i}/output/dense/MatMul" for i in range(3))
_OPSET = 17
#: Bump when the export itself changes, so older cached exports are not reused.
EXPORT_VERSION = 2


def cached_onnx_model(
    model_folder: Path,
    quantization: str,
    *,
    package: str,
    cache_dir: Path,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``model.onnx`` of ``model_folder`` at ``quantization`` (``"fp32"`` or ``"int8"``).

    ``package`` is the distribution that ships the folder (its version keys the cache); the
    export lives in a folder of ``cache_dir``. ``log`` hears when an export starts.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    key = {
        "export": EXPORT_VERSION,
        "model": f"{package} {_version(package)}",
        "onnxruntime": onnxruntime.__version__,
        "opset": _OPSET,
        "quantization": _describe(quantization),
    }

    def build(folder: Path) -> None:
        if log:
            log(f"exporting the model of {package} to ONNX {quantization} in {cache_dir} (once)")
        export_onnx(model_folder, folder / MODEL_FILE, quantization)

    name = f"{package.replace('_', '-')}-{quantization}"
    return cached_folder(cache_dir, name, key, build, log=log) / MODEL_FILE


def export_onnx(model_folder: Path, out_file: Path, quantization: str) -> None:
    """Write the transformer of ``model_folder`` to ``out_file`` as ONNX at ``quantization``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(
        str(model_folder), local_files_only=True, attn_implementation="eager"
    ).eval()
    float_file = out_file.with_name("float.onnx") if quantization == "int8" else out_file
    ids = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notes about the exporter
        torch.onnx.export(
            _last_hidden_state(model),
            (ids, torch.ones_like(ids)),
            str(float_file),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    if quantization == "int8":
        _quantize(float_file, out_file)
        float_file.unlink()


def _last_hidden_state(model):
    """``model`` as a module of ``(input_ids, attention_mask)`` (single-segment texts)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            # by keyword: transformers 5 rejects these as positional arguments
            outputs = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            )
            return outputs.last_hidden_state

    return LastHiddenState()


def _quantize(float_file: Path, out_file: Path) -> None:
    """Dynamic int8 with per-channel weights, except the ``FLOAT_MATMULS``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    matmuls = {
        node.name for node in onnx.load(str(float_file)).graph.node if node.op_type == "MatMul"
    }
    if not set(FLOAT_MATMULS) <= matmuls:
        raise RuntimeError(
            f"the exported graph has no {sorted(set(FLOAT_MATMULS) - matmuls)}: the export's node "
            "names changed, so the float32 layers cannot be kept"
        )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs "consider pre-processing" on the root
    try:
        quantize_dynamic(
            str(float_file),
            str(out_file),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=list(FLOAT_MATMULS),
        )
    finally:
        root.setLevel(level)


def _describe(quantization: str) -> str:
    if quantization == "fp32":
        return "fp32"
    return f"int8 dynamic, per-channel weights; float32: {', '.join(FLOAT_MATMULS)}"


def _version(package: str) -> str:
    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"
