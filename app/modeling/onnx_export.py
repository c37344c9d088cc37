"""Export a model directory to ONNX: model.onnx (fp32) and model.int8.onnx (static int8, app.modeling.quantize).

Both graphs take input_ids, attention_mask, token_type_ids as int64 (batch, sequence) with dynamic axes and
return logits (batch, num_labels) float32. The files are self-contained (no external data) and byte-for-byte
reproducible for the same weights, so re-exporting a shipped model does not churn the repository.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from app.errors import ModelLoadError, RuntimeFailure
from app.modeling import quantize
from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model
from app.modeling.quantize import Pair, calibration_pairs
from app.modeling.tokenizer import PairTokenizer
from app.runtime.onnx import INT8_FILE, ONNX_FILE

log = logging.getLogger(__name__)

# The checkout's shared/data (STS-B, WikiQA), next to the repository as in `hashrank eval`.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
# 17 has native LayerNormalization and is supported by every onnxruntime >= 1.17 we allow.
OPSET = 17
# fp32 ONNX must reproduce PyTorch to this many logit units (observed on STS-B dev: 2e-7 to 1.5e-6).
FP32_TOLERANCE = 1e-4
# Short and long, similar and unrelated, so one padded batch exercises the attention mask.
_CHECK_PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar."),
    ("A woman is slicing an onion.", "Two dogs run across a snowy field."),
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("cheap flights", "The committee postponed its vote on the budget until next spring."),
    ("Hi", "Hello there, how are you doing on this fine morning in late November?"),
    ("The stock market fell sharply today.", "Shares tumbled as investors reacted to weak earnings."),
    ("A cat sits on the mat.", "A cat sits on the mat."),
    ("", "An empty first text still makes a valid pair."),
]


def _example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Batch 2 x length 9 with one padded row: both axes > 1 so torch.export does not specialise them.
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab_size, (2, 9), generator=generator)  # (B, T)
    attention_mask = torch.ones(2, 9, dtype=torch.int64)
    attention_mask[1, 6:] = 0
    token_type_ids = torch.zeros(2, 9, dtype=torch.int64)
    token_type_ids[:, 5:] = 1
    return input_ids, attention_mask, token_type_ids


def export_fp32(model: BertHashForSequenceClassification, path: Path) -> None:
    """Trace the model with the TorchScript exporter and write a single-file fp32 ONNX graph.

    Not torch.export (dynamo): for the same weights its graph ran at 0.76-0.80x the speed of this one in a
    1-thread ONNX Runtime session, because ORT fuses this graph's GELU into BiasGelu but not dynamo's
    Div/Erf/Mul, and fuses dynamo's residual adds into SkipLayerNormalization, slower than Add +
    LayerNormalization at our hidden size (loadtest/README.md, "The exported graph"). Scores agree to 2e-6.
    """
    model = model.eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {OUTPUT_NAME: {0: "batch"}}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), _quiet_exporter():
        staged = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            _example_inputs(model.config.vocab_size),
            str(staged),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=False,
            dynamic_axes=axes,
        )
        proto = onnx.load(staged)
    _strip_volatile_metadata(proto)
    onnx.checker.check_model(proto, full_check=True)
    _write(proto, path)


def quantize_int8(fp32_path: Path, int8_path: Path, pairs: list[Pair], tokenizer: PairTokenizer) -> None:
    """int8 with activation scales fixed by calibration on `pairs` (app.modeling.quantize) of the fp32 graph."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / INT8_FILE
        with _quiet_exporter():
            quantize.quantize_int8(fp32_path, out, pairs, tokenizer)
        proto = onnx.load(out)
    _strip_volatile_metadata(proto)
    onnx.checker.check_model(proto)
    _write(proto, int8_path)


def export_onnx(model_dir: Path, *, int8: bool = True, calibration: list[Pair] | None = None) -> list[Path]:
    """Write MODEL_DIR/model.onnx (and model.int8.onnx) from config.json + model.safetensors. `calibration`:
    the pairs that fix int8's activation scales (default: calibration_pairs(DEFAULT_DATA_DIR)).

    >>> export_onnx(Path("models/sts-hash-nano"))
    [PosixPath('models/sts-hash-nano/model.onnx'), PosixPath('models/sts-hash-nano/model.int8.onnx')]
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: not a directory")
    model = load_model(model_dir)
    written = [model_dir / ONNX_FILE]
    export_fp32(model, written[0])
    if int8:
        written.append(model_dir / INT8_FILE)
        pairs = calibration if calibration is not None else calibration_pairs(DEFAULT_DATA_DIR)
        tokenizer = PairTokenizer.from_dir(model_dir, model.config.max_length)
        quantize_int8(written[0], written[1], pairs, tokenizer)
    for path in written:
        log.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)
    return written


@dataclass(frozen=True)
class ExportReport:
    pairs: int
    # Backend ("onnx", "onnx-int8") -> max |logit - torch logit| over the check pairs.
    max_delta: dict[str, float]


def verify_export(model_dir: Path) -> ExportReport:
    """Score a few fixed pairs with torch and the exported graphs; fail if fp32 drifts past FP32_TOLERANCE."""
    from app.scorer import Scorer

    model_dir = Path(model_dir)
    reference = Scorer.load(model_dir, "torch").score(_CHECK_PAIRS, raw=True)
    backends = ["onnx"] + (["onnx-int8"] if (model_dir / INT8_FILE).is_file() else [])
    deltas = {}
    for backend in backends:
        logits = Scorer.load(model_dir, backend).score(_CHECK_PAIRS, raw=True)  # type: ignore[arg-type]
        deltas[backend] = float(abs(logits - reference).max())
    if deltas["onnx"] > FP32_TOLERANCE:
        raise RuntimeFailure(
            f"{model_dir / ONNX_FILE}: fp32 ONNX differs from PyTorch by {deltas['onnx']:.2e} logits "
            f"(tolerance {FP32_TOLERANCE:.0e}); the export is wrong, do not ship it"
        )
    return ExportReport(len(_CHECK_PAIRS), deltas)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' advice that does not apply here, so real warnings stay visible."""
    # torch.onnx logs one line per missing torchvision op and calls the TorchScript exporter legacy (chosen on
    # purpose, see export_fp32; torch is pinned); quantize_dynamic logs on the root
    # logger that it wants a shape-inference pre-pass, which our fully-shaped fp32 graph does not need.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = registration.level
    registration.setLevel(logging.ERROR)
    root_filter = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(root_filter)
    try:
        with warnings.catch_warnings():
            for message in (r".*legacy TorchScript-based ONNX export.*", r".*feature will be removed.*"):
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            yield
    finally:
        registration.setLevel(old_level)
        logging.getLogger().removeFilter(root_filter)


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _strip_volatile_metadata(proto: onnx.ModelProto) -> None:
    # Tool versions and doc strings (which can hold source paths) change between machines, not weights.
    proto.producer_version = ""
    proto.doc_string = ""
    del proto.metadata_props[:]
    for node in proto.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]


def _write(proto: onnx.ModelProto, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(proto.SerializeToString(deterministic=True))
    tmp.replace(path)  # atomic: a reader never sees half a model
