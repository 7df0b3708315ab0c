"""A sentence-transformers BERT folder exported to ONNX, optionally int8, offline and cached.

``cached_onnx_model(model_folder, quantization, package=..., cache_dir=...)`` returns the
``model.onnx`` built from ``model_folder`` into ``cache_dir``, exporting it on first use (about
10 s):

- ``torch.onnx.export`` (the TorchScript exporter, opset 17) traces the transformer alone,
  ``last_hidden_state`` out, with dynamic batch and sequence axes; pooling and normalization
  stay outside (``onnx_encoder.py``), where the model folder's own configuration drives them;
- ``"int8"``: onnxruntime's ``quantize_dynamic`` with int8 weights quantized **per output
  channel** (activations are quantized per tensor at run time). Per-tensor weights were measured
  here at 0.948 mean cosine to the float model, per-channel at 0.9925.

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
_OPSET = 17
#: Bump when the export itself changes, so older cached exports are not reused.
_EXPORT_VERSION = 1


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
        "export": _EXPORT_VERSION,
        "model": f"{package} {_version(package)}",
        "onnxruntime": onnxruntime.__version__,
        "opset": _OPSET,
        "quantization": "int8 dynamic, per-channel weights" if quantization == "int8" else "fp32",
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
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs "consider pre-processing" on the root
    try:
        quantize_dynamic(
            str(float_file), str(out_file), weight_type=QuantType.QInt8, per_channel=True
        )
    finally:
        root.setLevel(level)


def _version(package: str) -> str:
    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"
