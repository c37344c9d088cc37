# hashrank: `make serve` serves the shipped model on :8080; `make test` runs the whole suite.
# Both create .venv on first use and are idempotent (stamp files track what is installed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 0.0.0.0
PORT   ?= 8080
export HF_HUB_OFFLINE := 1

.PHONY: serve test test-fast lint bench reliability lock lock-dev train-sts train-rerank eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Serving install: no torch.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --constraint requirements/serve.lock -e .
	touch $@

# Tests need the torch/train/dev extras; torch is pinned first so nothing pulls a CUDA build.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --constraint requirements/dev.lock -e ".[dev]"
	touch $(VENV)/.serve-installed $@

serve: $(VENV)/.serve-installed
	$(BIN)/hashrank serve --host $(HOST) --port $(PORT)

test: $(VENV)/.dev-installed lint
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check app tests training loadtest deploy
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/python deploy/kubernetes/validate.py

# The peer the bench measures side by side (Infinity) lives in its own venv: its pins clash with ours.
PEERS_VENV := .venv-peers
$(PEERS_VENV)/.installed: requirements/peers.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet torch==2.13.0
	$(PEERS_VENV)/bin/pip install --quiet -r requirements/peers.txt
	touch $@

# sentence-transformers' CrossEncoder on its ONNX backend (optimum) needs transformers<4.58: its own venv too.
PEERS_ST_VENV := .venv-peers-st
$(PEERS_ST_VENV)/.installed: requirements/peers-st.txt
	$(PYTHON) -m venv $(PEERS_ST_VENV)
	$(PEERS_ST_VENV)/bin/pip install --quiet torch==2.13.0
	$(PEERS_ST_VENV)/bin/pip install --quiet -r requirements/peers-st.txt
	touch $@

bench: $(VENV)/.dev-installed $(PEERS_VENV)/.installed $(PEERS_ST_VENV)/.installed
	$(BIN)/python -m loadtest.bench

# Issue 25's torture suite: tests/reliability, then 30 s at 10x the sustainable rate and a 10-minute soak;
# writes loadtest/results/reliability-<date>.md (~15 min).
reliability: $(VENV)/.dev-installed
	$(BIN)/python -m loadtest.reliability

train-sts: $(VENV)/.dev-installed
	$(BIN)/python -m training.train sts-hash-nano --out models/sts-hash-nano

# The reranker (training/recipes/rerank-hash-nano.toml): its teacher caches first (the STS pool's MiniLM/e5
# embeddings, which train-sts also writes; the cross-encoder teacher's two folds, one per core), then the
# training stage (~25 min on one core), calibration, the test evaluation and the card.
train-rerank: $(VENV)/.dev-installed
	$(BIN)/python -m training.teachers --teachers minilm,e5
	$(BIN)/python -m training.cross_teacher --fold 0 --steps 1200 & fold0=$$!; \
		$(BIN)/python -m training.cross_teacher --fold 1 --steps 1200; fold1=$$?; \
		wait $$fold0 && test $$fold1 -eq 0
	$(BIN)/python -m training.train rerank-hash-nano --out models/rerank-hash-nano
	$(BIN)/python -m training.calibrate --model models/rerank-hash-nano --task rerank
	$(BIN)/python -m training.rerank_eval --model models/rerank-hash-nano
	$(BIN)/python -m training.rerank_card --model models/rerank-hash-nano --notes training/RERANK_CARD_NOTES.md

eval: $(VENV)/.dev-installed
	$(BIN)/hashrank eval --model models/sts-hash-nano

# Re-pin the serving install used by the Dockerfile.
lock:
	rm -rf /tmp/hashrank-lock && $(PYTHON) -m venv /tmp/hashrank-lock
	/tmp/hashrank-lock/bin/pip install --quiet .
	{ echo "# Pinned serving install (no torch), used by the Dockerfile and the container-equivalent test."; \
	  echo "# Regenerate: make lock"; \
	  /tmp/hashrank-lock/bin/pip freeze | grep -v '^hashrank'; } > requirements/serve.lock

# Re-pin the test environment from a fresh resolve.
lock-dev:
	rm -rf /tmp/hashrank-lock-dev && $(PYTHON) -m venv /tmp/hashrank-lock-dev
	/tmp/hashrank-lock-dev/bin/pip install --quiet torch==2.13.0
	/tmp/hashrank-lock-dev/bin/pip install --quiet -e ".[dev]"
	{ echo "# Pinned test/dev environment: keeps 'make test' fast to resolve and reproducible. Regenerate: make lock-dev"; \
	  /tmp/hashrank-lock-dev/bin/pip freeze | grep -v '^-e' | sed 's/+cpu$$//'; } > requirements/dev.lock

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache .ruff_cache .mypy_cache
