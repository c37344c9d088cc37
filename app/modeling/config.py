"""The architecture of a BERT (Hash) cross-encoder, read from and written to config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.errors import ModelLoadError

ModelType = Literal["bert_hash", "bert"]
Activation = Literal["sigmoid", "identity"]

# sentence-transformers records the CrossEncoder activation as a dotted class path.
_ST_ACTIVATIONS: dict[str, Activation] = {
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.linear.Identity": "identity",
}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    model_type: ModelType = "bert_hash"
    vocab_size: int = 30522
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 512
    # Width P of the per-token code that a Linear(P, H) lifts to the hidden size; None for plain BERT.
    projections: int | None = 16
    # Rows of the absolute position table: the hard ceiling on tokens per pair.
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    # None means "use hidden_dropout_prob", as in Hugging Face BERT.
    classifier_dropout: float | None = None
    num_labels: int = 1
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # Maps the logit to a score: sigmoid for a one-label cross-encoder (the sentence-transformers default).
    activation: Activation = "sigmoid"
    # Tokens per pair at inference; never above max_position_embeddings.
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ModelLoadError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.model_type == "bert_hash" and not self.projections:
            raise ModelLoadError("a bert_hash config needs a positive 'projections'")
        if self.max_length > self.max_position_embeddings:
            object.__setattr__(self, "max_length", self.max_position_embeddings)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # ---- config.json (Hugging Face layout) ----

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        model_type = raw.get("model_type")
        if model_type not in ("bert_hash", "bert"):
            raise ModelLoadError(f"config.json: unknown model_type {model_type!r}; expected 'bert_hash' or 'bert'")
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ModelLoadError(f"config.json: hidden_act {raw['hidden_act']!r} is not supported; only 'gelu'")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ModelLoadError("config.json: only absolute position embeddings are supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in fields}
        values["num_labels"] = _num_labels(raw)
        values["activation"] = _activation(raw, values["num_labels"])
        hashrank = raw.get("hashrank", {})
        max_pos = int(raw.get("max_position_embeddings", 512))
        values["max_length"] = min(int(hashrank.get("max_length", max_pos)), max_pos)
        if model_type == "bert":
            values["projections"] = None
        try:
            return cls(**values)
        except TypeError as exc:
            raise ModelLoadError(f"config.json: {exc}") from exc

    def to_hf_dict(self) -> dict[str, Any]:
        is_hash = self.model_type == "bert_hash"
        raw: dict[str, Any] = {
            "architectures": ["BertHashForSequenceClassification" if is_hash else "BertForSequenceClassification"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": "gelu",
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "classifier_dropout": self.classifier_dropout,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "initializer_range": self.initializer_range,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
            "id2label": {str(i): f"LABEL_{i}" for i in range(self.num_labels)},
            "label2id": {f"LABEL_{i}": i for i in range(self.num_labels)},
            "torch_dtype": "float32",
            "sentence_transformers": {"activation_fn": _st_activation_name(self.activation)},
            "hashrank": {"format_version": FORMAT_VERSION, "max_length": self.max_length},
        }
        if is_hash:
            raw["projections"] = self.projections
            raw["auto_map"] = {
                "AutoConfig": "configuration_bert_hash.BertHashConfig",
                "AutoModel": "modeling_bert_hash.BertHashModel",
                "AutoModelForSequenceClassification": "modeling_bert_hash.BertHashForSequenceClassification",
            }
        return raw

    @classmethod
    def load(cls, model_dir: Path) -> ModelConfig:
        path = model_dir / "config.json"
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing config.json")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{path}: expected a JSON object")
        return cls.from_hf_dict(raw)

    def save(self, model_dir: Path) -> None:
        text = json.dumps(self.to_hf_dict(), indent=2) + "\n"
        (model_dir / "config.json").write_text(text, encoding="utf-8")


PRESETS: dict[str, ModelConfig] = {
    # NeuML bert-hash-femto/pico/nano shapes (shared/reference/bert-hash.md §1).
    "femto": ModelConfig(hidden_size=50, num_attention_heads=2, intermediate_size=200, projections=5),
    "pico": ModelConfig(hidden_size=80, num_attention_heads=2, intermediate_size=320, projections=8),
    "nano": ModelConfig(hidden_size=128, num_attention_heads=2, intermediate_size=512, projections=16),
}


def _num_labels(raw: dict[str, Any]) -> int:
    if "num_labels" in raw:
        return int(raw["num_labels"])
    if isinstance(raw.get("id2label"), dict):
        return len(raw["id2label"])
    return 1


def _activation(raw: dict[str, Any], num_labels: int) -> Activation:
    st = raw.get("sentence_transformers")
    name = st.get("activation_fn") if isinstance(st, dict) else None
    name = name or raw.get("sbert_ce_default_activation_function")
    if name is None:
        return "sigmoid" if num_labels == 1 else "identity"
    if name not in _ST_ACTIVATIONS:
        raise ModelLoadError(f"config.json: unsupported activation {name!r}; supported: {sorted(_ST_ACTIVATIONS)}")
    return _ST_ACTIVATIONS[name]


def _st_activation_name(activation: Activation) -> str:
    return next(name for name, value in _ST_ACTIVATIONS.items() if value == activation)
