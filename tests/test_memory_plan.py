"""`spell plan` (spell.memory_plan): the arithmetic against exact parameter counts and against host memory
measured on CPU, the presets' budgets, and the refusals with what to change (`spell run` makes the same check)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spell.cli import main
from spell.config import load_config
from spell.memory_plan import KNOWN_SHAPES, ModelShape, model_shape, plan_memory

ROOT = Path(__file__).resolve().parents[1]
PAPER, LORA = "configs/paper-qwen2.5-7b-8gpu.yaml", "configs/qwen3-4b-1gpu-lora.yaml"


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_parameter_count_is_exact(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    from spell.engine.models.tiny import build_tiny_model

    path = build_tiny_model(tmp_path / arch, arch=arch, hidden_size=64, layers=3, heads=4, kv_heads=2)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model_shape(str(path)).params == sum(p.numel() for p in model.parameters())
    # the packaged SmolLM2-135M-Instruct, counted from its loaded weights: 134,515,008
    assert ModelShape.from_config(KNOWN_SHAPES["smollm2"]).params == 134_515_008


def _plan(config, gpus, gib, *sets):
    cfg = load_config(config, list(sets))
    return plan_memory(cfg, model_shape(cfg.model.path), gpus, gib)


def test_presets_fit_their_clusters_and_the_old_8gpu_layout_is_refused():
    assert _plan(PAPER, 8, 80.0).fits and _plan(LORA, 1, 80.0).fits
    old = _plan(PAPER, 8, 80.0, "engine.logprob_chunk_tokens=0")  # the official 32000 budget, the head whole
    assert not old.fits and "set engine.logprob_chunk_tokens" in old.problems[0]
    assert "logits" in old.problems[0] and "learner rank" in old.problems[0]
    small = _plan(PAPER, 4, 80.0)
    assert "needs 8 GPUs, the cluster has 4" in small.problems[0]
    # the 1-GPU preset's old vLLM context (the model's 262K positions) cannot start: KV for one sequence
    long = _plan(LORA, 1, 80.0, "engine.max_model_len=262144")
    assert any(p.startswith("vLLM cannot start") for p in long.problems)
    assert not _plan(LORA, 1, 40.0, "engine.logprob_chunk_tokens=0").fits
    assert _plan(LORA, 1, 40.0).fits  # with the head in 4096-token chunks it fits a 40 GB GPU too (on paper)


def test_cli_prints_the_budget_and_refuses_in_one_line(capsys):
    assert main(["plan", "--config", PAPER, "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "learner rank + colocated vLLM replica (x7)" in out and "assumptions:" in out and out.endswith("fits\n")
    assert main(["plan", "--config", PAPER, "--gpus", "8", "--gpu-memory", "80", "--set",
                 "engine.logprob_chunk_tokens=0"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("spell: memory plan:") and "\n" not in err
    assert main(["plan", "--config", "configs/default.yaml"]) == 0  # a CPU run: the host's budget
    assert "a CPU run" in capsys.readouterr().out


def test_spell_run_refuses_a_layout_that_does_not_fit(monkeypatch, tmp_path, capsys):
    import spell.memory_plan as mp

    monkeypatch.setattr(mp, "local_gpus", lambda: (1, 40.0))  # one 40 GiB GPU here
    rc = main(["run", "--config", LORA, "--runs-dir", str(tmp_path), "--iterations", "1",
               "--set", "engine.logprob_chunk_tokens=0"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "memory plan:" in err and "38.0 GiB usable" in err
    assert not any(tmp_path.glob("*/iter_*"))  # refused before anything started


def _probes(*specs):
    """Each spec (model, prompt tokens, response tokens, sequences[, "checkpointing"]) in one fresh process."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "memory_probe.py"), *(":".join(map(str, s)) for s in specs)],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=600,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(specs) :]]


@pytest.mark.slow
def test_learner_step_arithmetic_matches_measured_host_memory(tmp_path):
    """Peak host memory of one learner step (resident memory above the loaded model, every tensor its own
    mapping) against the plan's AdamW state, gradients, activations and logits, for the default model's
    width and vocabulary (4 of its 30 layers: the arithmetic is per layer) with and without gradient
    checkpointing and a small model: the plan is never more than 20% under what was measured (an
    under-estimate is the failure that matters), nor more than 70% over (its per-layer activation constants
    are fitted, not derived). Measured on the dev box: 1.17, 1.04 and 1.01 of the peak (1.34 and 0.99 with
    8 layers); the small model with checkpointing, not asserted: 1.62. Then a response-heavy step with the
    head whole and in 256-token chunks: 1.06 and 1.12 of the peak."""
    from spell.engine.models.tiny import build_tiny_model

    smol = KNOWN_SHAPES["smollm2"]
    default = build_tiny_model(
        tmp_path / "smollm2-shape", arch="llama", hidden_size=smol["hidden_size"], layers=4,  # 4 of its 30
        heads=smol["num_attention_heads"], kv_heads=smol["num_key_value_heads"],
        intermediate_size=smol["intermediate_size"], vocab_size=smol["vocab_size"],
    )  # fmt: skip
    small = build_tiny_model(tmp_path / "small", hidden_size=256, layers=4, heads=4, kv_heads=2, max_positions=8192)
    probes = _probes((default, 1024, 256, 2), (default, 1024, 256, 2, "checkpointing"), (small, 2048, 512, 4),
                     (default, 512, 1024, 2), (default, 512, 1024, 2, "chunk256"))  # fmt: skip
    for m in probes:
        assert m["params"] == m["planned_params"]
        assert 0.8 * m["step_peak"] <= m["planned_step_peak"] <= 1.7 * m["step_peak"], m
    # the chunked head (engine.logprob_chunk_tokens) saves what the plan says it saves: 2048 kept tokens x
    # 49152 x 12 B whole against 256 x 49152 x 8 B (measured on the dev box: 1.11 GB saved, 1.11 planned)
    whole, chunked = probes[3:]
    planned = whole["planned_step_peak"] - chunked["planned_step_peak"]
    assert whole["step_peak"] - chunked["step_peak"] >= 0.8 * planned, (whole, chunked)


def test_the_8gpu_plan_counts_the_learner_reserve_and_the_bf16_logits_backward():
    """Issue 27 item 7: what the plan missed, each term from the preset's numbers; the head whole (20 B per
    kept logit) and chunked (engine.logprob_chunk_tokens: one chunk's logits and the head gradient)."""
    from spell.memory_plan import CHUNK_LOGIT_BYTES_BF16, GIB, LEARNER_RESIDUE, LOGIT_BYTES_BF16, micro_batch_tokens

    cfg = load_config(PAPER)
    plan = plan_memory(cfg, model_shape(cfg.model.path), 8, 80.0)
    rank = plan.budgets[1].items
    shape = model_shape(cfg.model.path)
    new = cfg.rollout.max_new_tokens
    kept = cfg.engine.train_token_budget * new / (new + 1024)
    chunk = cfg.engine.logprob_chunk_tokens
    assert chunk < kept and cfg.engine.train_token_budget == 32000  # the official budget, in chunks
    chunked = chunk * shape.vocab * CHUNK_LOGIT_BYTES_BF16 + shape.vocab * shape.hidden * 6
    assert rank["logits (response tokens)"][1] == pytest.approx(chunked / GIB)
    whole = _plan(PAPER, 8, 80.0, "engine.logprob_chunk_tokens=0").budgets[1].items
    assert whole["logits (response tokens)"][1] == pytest.approx(kept * shape.vocab * LOGIT_BYTES_BF16 / GIB)
    # the longest row gets its own micro-batch where it is over the budget
    assert micro_batch_tokens(load_config(PAPER, ["engine.train_token_budget=16000"])) == 16384 + 4096
    assert micro_batch_tokens(cfg) == 32000
    tokens = micro_batch_tokens(cfg)
    assert rank["attention mask (shared/packed rows)"][1] == pytest.approx(tokens * tokens * 2 / GIB)
    reserve, _ = rank["learner reserve after empty_cache"]
    transients = sum(t for n, (_, t) in rank.items() if n in (
        "gradients (sharded)", "gathered bf16 layers + root unit", "activations (one micro-batch)",
        "logits (response tokens)", "attention mask (shared/packed rows)"))  # fmt: skip
    assert reserve == pytest.approx(LEARNER_RESIDUE * transients) and reserve > 0  # held while vLLM is awake
    untied = rank["gathered bf16 layers + root unit"][1] * GIB - 2 * shape.layer_params() * 2
    assert untied == pytest.approx(2 * shape.vocab * shape.hidden * 2)  # embeddings and head, both gathered
    assert plan.fits
