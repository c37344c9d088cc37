"""The naive baseline: a plain FastAPI app that runs ONE ONNX Runtime call per request, padded to the
request's longest pair, on the event loop. No queue, no coalescing, no length sorting: what a first
"wrap the model in FastAPI" attempt looks like (the issue's 1.4k-1.6k pairs/s anchor).

Same API shape as hashrank's /score and /rank, same tokenizer and model files, so the load generator
drives both alike.

    $ taskset -c 0 python -m loadtest.naive_server --score-model models/sts-hash-nano --port 8091
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from app.modeling.config import ModelConfig
from app.modeling.tokenizer import PairTokenizer
from loadtest.ceiling import FILES


class ScoreBody(BaseModel):
    pairs: list[tuple[str, str]]


class RankBody(BaseModel):
    query: str
    documents: list[str]


class Model:
    """Tokenizer + a 1-thread session; score() = encode, pad to the longest, one run, sigmoid."""

    def __init__(self, model_dir: Path, backend: str) -> None:
        config = ModelConfig.load(model_dir)
        self.tokenizer = PairTokenizer.from_dir(model_dir, config.max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / FILES[backend]), options, providers=["CPUExecutionProvider"]
        )
        self.feeds = [i.name for i in self.session.get_inputs()]

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        batch = self.tokenizer.pad(self.tokenizer.encode_pairs(pairs))
        (logits,) = self.session.run(["logits"], {name: getattr(batch, name) for name in self.feeds})
        return (1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))).tolist()


def create_app(score_model: Model, rank_model: Model) -> FastAPI:
    app = FastAPI()

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/score")
    async def score(body: ScoreBody) -> dict[str, list[float]]:
        return {"scores": score_model.score(body.pairs)}

    @app.post("/rank")
    async def rank(body: RankBody) -> dict[str, list[dict[str, float]]]:
        scores = rank_model.score([(body.query, d) for d in body.documents])
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return {"results": [{"index": i, "relevance_score": scores[i]} for i in order]}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-model", type=Path, required=True)
    parser.add_argument("--rank-model", type=Path, help="default: the score model")
    parser.add_argument("--backend", choices=sorted(FILES), default="onnx")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    score_model = Model(args.score_model, args.backend)
    rank_model = score_model if args.rank_model in (None, args.score_model) else Model(args.rank_model, args.backend)
    uvicorn.run(create_app(score_model, rank_model), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
