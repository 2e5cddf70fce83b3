"""Scale paths on a GPU (skipped without CUDA): packed flash-attn/SDPA rows, FSDP2 over NCCL (needs 2 GPUs),
replicas on the learner's GPUs (3). vLLM scenarios: test_engine_vllm. CPU twins: test_engine_learner,
test_vllm_sync, test_fsdp."""

import random

import pytest
import torch

pytestmark = pytest.mark.gpu

SEQS = [{"prompt_ids": [5, 6, 7, 8], "response_ids": [9, 10, 11], "advantage": 1.0},
        {"prompt_ids": [5, 6], "response_ids": [12], "advantage": -1.0}]  # fmt: skip


def test_packed_rows_match_padded_on_gpu(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
    from spell.engine.models.loading import attention_implementation

    rng = random.Random(0)
    seqs = [TrainSequence([rng.randint(5, 200) for _ in range(rng.randint(3, 60))],
                          [rng.randint(5, 200) for _ in range(rng.randint(1, 30))], 1.0) for _ in range(8)]  # fmt: skip
    impl = attention_implementation(torch.device("cuda"))
    out = []
    for packing in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16, attn_implementation=impl)
        out.append(Learner(model.cuda(), LearnerSettings(token_budget=256, packing=packing)).logprobs(seqs))
    for a, b in zip(*out, strict=True):
        assert a == pytest.approx(b, abs=5e-2)  # bf16


@pytest.mark.ray
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("cpu_offload", [False, True])
def test_fsdp2_over_nccl_trains(ray_local, tiny_model_dir, cpu_offload):
    from spell.engine.learner.core import LearnerSettings
    from spell.engine.learner.fsdp import ShardingSettings
    from spell.engine.learner.group import LearnerGroup

    sharding = ShardingSettings(world_size=2, mixed_precision="bf16", cpu_offload=cpu_offload)
    group = LearnerGroup(tiny_model_dir, LearnerSettings(lr=1e-3), sharding, gpus_per_rank=1)
    try:
        assert [i["backend"] for i in group.info] == ["nccl", "nccl"]
        m = group.train_step(SEQS)
        assert m["skipped"] == 0.0 and m["tokens"] == 4
    finally:
        group.shutdown()


@pytest.mark.ray
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 3, reason="needs 3 GPUs")
def test_replicas_share_the_learner_gpus(ray_local, tiny_model_dir):
    import ray

    from spell.engine.policy import PolicySpec
    from spell.engine.ray_policy import kill_policy_actor, policy_actor

    spec = PolicySpec(model_path=tiny_model_dir, learner_ranks=2, rollout_replicas=3, backend="vllm")
    actor = policy_actor("colocated", spec)
    try:
        out = ray.get(actor.rollout.remote(["a", "b", "c"], {"n": 1, "max_new_tokens": 4}))
        assert len(out) == 3
        assert ray.get(actor.train_step.remote(SEQS))["skipped"] == 0.0
    finally:
        kill_policy_actor("colocated")
