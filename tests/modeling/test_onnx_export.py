"""The exported graphs: interface, fp32 parity with PyTorch, int8 rank agreement, odd shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from scipy.stats import spearmanr

from app.modeling.onnx_export import FP32_TOLERANCE, verify_export
from app.modeling.tokenizer import Batch
from app.runtime import load_runtime
from app.scorer import Scorer


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_graph_interface(random_model_dir: Path, name: str) -> None:
    graph = onnx.load(random_model_dir / name)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: i.type.tensor_type for i in graph.graph.input}
    assert list(inputs) == ["input_ids", "attention_mask", "token_type_ids"]
    for t in inputs.values():
        assert t.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in t.shape.dim] == ["batch", "sequence"]  # both axes dynamic
    (output,) = graph.graph.output
    assert output.name == "logits" and output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not any(init.external_data for init in graph.graph.initializer)  # one self-contained file


def test_fp32_graph_is_fp32_and_int8_graph_is_smaller(random_model_dir: Path) -> None:
    fp32 = onnx.load(random_model_dir / "model.onnx")
    assert {i.data_type for i in fp32.graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert (random_model_dir / "model.int8.onnx").stat().st_size < 0.4 * (
        random_model_dir / "model.onnx"
    ).stat().st_size


def test_fp32_matches_torch_on_sts_dev(model_dir: Path, dev_pairs: list[tuple[str, str]]) -> None:
    torch_logits = Scorer.load(model_dir, "torch").score(dev_pairs, raw=True)
    onnx_logits = Scorer.load(model_dir, "onnx").score(dev_pairs, raw=True)
    assert torch_logits.std() > 1e-3  # the logits vary, so agreement means something
    assert np.abs(onnx_logits - torch_logits).max() <= FP32_TOLERANCE


def test_int8_ranks_like_fp32_on_sts_dev(model_dir: Path, dev_pairs: list[tuple[str, str]]) -> None:
    fp32 = Scorer.load(model_dir, "onnx").score(dev_pairs, raw=True)
    int8 = Scorer.load(model_dir, "onnx-int8").score(dev_pairs, raw=True)
    rho = spearmanr(int8, fp32).statistic
    # Trained models agree closely (0.9996 on the shipped nano). Random weights are chaotic (a tiny input
    # change moves the logit a lot) and per-tensor activation scales fixed at export land at 0.989 there.
    bar = 0.98 if model_dir.name.startswith("random") else 0.999
    assert rho >= bar, rho


@pytest.mark.parametrize("shape", [(1, 1), (1, 512), (64, 7)])
def test_dynamic_axes_accept_any_batch_and_length(random_model_dir: Path, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30522, size=shape)
    batch = Batch(ids, np.ones(shape, np.int64), np.zeros(shape, np.int64))
    want = load_runtime(random_model_dir, "torch").run(batch)
    got = load_runtime(random_model_dir, "onnx").run(batch)
    assert got.shape == (shape[0], 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=FP32_TOLERANCE)


def test_verify_export_reports_parity(random_model_dir: Path) -> None:
    report = verify_export(random_model_dir)
    assert report.max_delta["onnx"] <= FP32_TOLERANCE
    assert 0 < report.max_delta["onnx-int8"] < 0.5


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_runtime_fuses_gelu_and_layer_norm(random_model_dir: Path, tmp_path: Path, name: str) -> None:
    # The TorchScript export is chosen because ONNX Runtime fuses its GELU (the dynamo graph kept
    # Div/Erf/Mul apart and ran at ~0.8x); a regression here costs that speed again.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(random_model_dir / name), options, providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node}
    assert "Erf" not in ops and ops & {"BiasGelu", "Gelu"}
    assert "LayerNormalization" in ops or "SkipLayerNormalization" in ops
    assert "ReduceMean" not in ops  # no LayerNorm left in pieces
