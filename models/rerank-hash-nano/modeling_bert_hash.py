"""BERT Hash for `transformers` (trust_remote_code): stock BERT whose word-embedding table is replaced by a
[vocab, projections] code table and a Linear(projections, hidden) lift.

State-dict keys match hashrank's own model (app/modeling/bert_hash.py) and the published checkpoints:
bert.embeddings.word_embeddings.embeddings.weight [V, P], ...word_embeddings.projections.{weight [H, P], bias [H]}.
Everything else is reused from transformers' BERT, so numerics follow it (exact GELU, post-LN).
"""

import torch
from torch import nn
from transformers.models.bert.modeling_bert import BertForSequenceClassification, BertModel

from .configuration_bert_hash import BertHashConfig


class BertHashTokens(nn.Module):
    """input_ids (B, T) -> learned code (B, T, P) -> hidden (B, T, H)."""

    def __init__(self, config: BertHashConfig) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.projections)
        self.projections = nn.Linear(config.projections, config.hidden_size, bias=True)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.projections(self.embeddings(input_ids))


class BertHashModel(BertModel):
    config_class = BertHashConfig
    config: BertHashConfig

    def __init__(self, config: BertHashConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        # BertEmbeddings calls self.word_embeddings(input_ids); swap the [V, H] table for the hash tokens.
        self.embeddings.word_embeddings = BertHashTokens(config)
        self.post_init()

    # resize_token_embeddings() must resize the [V, P] table, the only vocabulary-sized tensor.
    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings.embeddings = value


class BertHashForSequenceClassification(BertForSequenceClassification):
    config_class = BertHashConfig
    config: BertHashConfig

    def __init__(self, config: BertHashConfig) -> None:
        super().__init__(config)
        self.bert = BertHashModel(config)
        self.post_init()
