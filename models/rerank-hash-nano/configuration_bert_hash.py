"""BERT Hash config for `transformers` (trust_remote_code): a BertConfig plus `projections`.

Shipped by hashrank inside each bert_hash model directory so that
`AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)` and
`sentence_transformers.CrossEncoder(DIR, trust_remote_code=True)` load it without hashrank installed.
"""

from transformers import BertConfig


class BertHashConfig(BertConfig):
    model_type = "bert_hash"
    # Width P of each token's learned code, lifted to hidden_size by Linear(P, H). A class-level
    # annotated default works both as a transformers>=5 dataclass field and as a 4.x extra kwarg.
    projections: int = 5
