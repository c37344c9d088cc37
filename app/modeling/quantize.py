"""Deterministic int8: ONNX Runtime's integer MatMul kernels with activation scales fixed once, calibrated on
training-split text, so a pair's score does not depend on the other pairs in its batch (dynamic quantization
picks each activation's scale per batch and moved a logit by up to 0.16 with its batch-mates).

How: quantize_dynamic gives int8 weights (per output channel, 7-bit) and a DynamicQuantizeLinear before each
quantized MatMul; each of those becomes a QuantizeLinear with the scale and zero point that cover the tensor's
calibrated range, and MatMulInteger -> Cast -> Mul(scales) -> Add(bias) becomes one MatMulIntegerToFloat.
Attention's two activation-by-activation MatMuls stay fp32, as in dynamic quantization. ONNX Runtime's own
static (QDQ) quantizer was measured too: 0.91x the fp32 graph's speed on an AVX2 CPU (requantizing every
output), against 1.1-1.2x for this graph; STS-B and WikiQA dev within 0.001 of fp32 (loadtest/README.md).

    >>> quantize_int8(Path("model.onnx"), Path("model.int8.onnx"), calibration_pairs(DATA_DIR), tokenizer)
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from app.errors import ModelLoadError
from app.modeling.tokenizer import PairTokenizer

Pair = tuple[str, str]

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The hash Gather table ([V, P], half of the parameters) is quantized too: it left STS-B dev unchanged and
# shrinks the file from 2.7 to 1.0 MB.
OP_TYPES = ["MatMul", "Gemm", "Gather"]
# Calibration: this many pairs from each training split, in length-sorted batches as the server runs them.
CALIBRATION_PAIRS_PER_SOURCE = 256
CALIBRATION_BATCH = 32
CALIBRATION_SEED = 0


def calibration_pairs(data_dir: Path) -> list[Pair]:
    """Training-split text only: STS-B train sentence pairs and WikiQA train question-sentence pairs, so both a
    similarity and a relevance model see their own kind of input (shared/data layout)."""
    from app.evaluation import read_sts_b

    wikiqa = data_dir / "wikiqa" / "WikiQA-train.txt"
    if not wikiqa.is_file() or not (data_dir / "stsbenchmark" / "sts-train.csv").is_file():
        raise ModelLoadError(
            f"{data_dir}: no STS-B / WikiQA train files to calibrate int8 on; pass --calibration-data DIR "
            "(the shared/data layout) or --calibration FILE (JSON lines of pairs), or --no-int8"
        )
    sts, _ = read_sts_b(data_dir, "train")
    qa = [tuple(line.split("\t")[:2]) for line in wikiqa.read_text(encoding="utf-8").splitlines() if "\t" in line]
    rng = random.Random(CALIBRATION_SEED)
    picked = rng.sample(sts, CALIBRATION_PAIRS_PER_SOURCE) + rng.sample(qa, CALIBRATION_PAIRS_PER_SOURCE)
    return [(a, b) for a, b in picked]


def quantize_int8(fp32_path: Path, int8_path: Path, pairs: Sequence[Pair], tokenizer: PairTokenizer) -> None:
    """Write int8_path: fp32_path with int8 weights and activation scales fixed by the ranges seen on `pairs`."""
    if not pairs:
        raise ModelLoadError("int8 calibration needs at least one pair")
    with tempfile.TemporaryDirectory() as tmp:
        dynamic = Path(tmp) / "dynamic.onnx"
        quantize_dynamic(
            fp32_path,
            dynamic,
            op_types_to_quantize=OP_TYPES,
            # Per-channel + 7-bit weights: u8 x s8 products saturate VPMADDUBSW on AVX2 CPUs without VNNI.
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
        )
        model = onnx.load(dynamic)
    inputs = [n.input[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    _pin_activation_scales(model, activation_ranges(fp32_path, inputs, pairs, tokenizer))
    _fuse_integer_matmuls(model)
    onnx.save(model, int8_path)


def activation_ranges(
    fp32_path: Path, names: list[str], pairs: Sequence[Pair], tokenizer: PairTokenizer
) -> dict[str, tuple[float, float]]:
    """(min, max) of each named fp32 tensor over the pairs, widened to include 0 as uint8 zero points need."""
    model = onnx.load(fp32_path)
    model.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor by name
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ranges = dict.fromkeys(names, (0.0, 0.0))
    encoded = tokenizer.encode_pairs(pairs)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), CALIBRATION_BATCH):
        batch = tokenizer.pad([encoded[i] for i in order[start : start + CALIBRATION_BATCH]])
        values = session.run(names, {name: getattr(batch, name) for name in INPUT_NAMES})
        for name, value in zip(names, values, strict=True):
            low, high = ranges[name]
            ranges[name] = (min(low, float(value.min())), max(high, float(value.max())))
    return ranges


def _pin_activation_scales(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> None:
    """Each DynamicQuantizeLinear(x) -> QuantizeLinear(x, scale, zero_point) with its outputs' names kept."""
    for index, node in enumerate(model.graph.node):
        if node.op_type != "DynamicQuantizeLinear":
            continue
        low, high = ranges[node.input[0]]
        scale = max(high - low, 1e-8) / 255.0
        zero_point = int(np.clip(round(-low / scale), 0, 255))
        quantized, scale_name, zero_point_name = node.output
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
                numpy_helper.from_array(np.array(zero_point, dtype=np.uint8), zero_point_name),
            ]
        )
        static = helper.make_node("QuantizeLinear", [node.input[0], scale_name, zero_point_name], [quantized])
        model.graph.node.remove(node)
        model.graph.node.insert(index, static)


def _fuse_integer_matmuls(model: onnx.ModelProto) -> None:
    """MatMulInteger -> Cast -> Mul(a_scale * b_scale) [-> Add(bias)] => MatMulIntegerToFloat (com.microsoft).

    ONNX Runtime fuses this pattern by itself only when the activation scale is computed at run time."""
    nodes = list(model.graph.node)
    weights = {i.name for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in nodes for out in node.output}
    fused: list[onnx.NodeProto] = []
    dropped: set[int] = set()
    for node in nodes:
        if node.op_type != "MatMulInteger":
            fused.append(node)
            continue
        (cast,) = consumers[node.output[0]]
        (rescale,) = consumers[cast.output[0]]
        scales = producers[next(i for i in rescale.input if i != cast.output[0])]  # Mul(a_scale, b_scale)
        a, b, a_zero, b_zero = node.input
        # The quantizer names a tensor's parameters <tensor>_scale and <tensor>_zero_point.
        a_scale = next(i for i in scales.input if i.removesuffix("scale") == a_zero.removesuffix("zero_point"))
        b_scale = next(i for i in scales.input if i != a_scale)
        output, bias = rescale.output[0], ""
        after = consumers.get(output, [])
        if len(after) == 1 and after[0].op_type == "Add" and any(i in weights for i in after[0].input):
            bias = next(i for i in after[0].input if i in weights)
            output = after[0].output[0]
            dropped.add(id(after[0]))
        fused.append(
            helper.make_node(
                "MatMulIntegerToFloat",
                [a, b, a_scale, b_scale, a_zero, b_zero, bias],
                [output],
                name=node.name,
                domain="com.microsoft",
            )
        )
        dropped.update({id(cast), id(rescale), id(scales)})
    del model.graph.node[:]
    model.graph.node.extend(n for n in fused if id(n) not in dropped)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
