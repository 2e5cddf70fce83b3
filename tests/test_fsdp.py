"""The sharded learner on CPU: FSDP2 over 2 Ray actors with the gloo backend takes the same step as one
process on the whole batch; a sharded checkpoint exports to a Hugging Face folder with the same weights."""

import dataclasses
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from spell.engine.batching import split_by_tokens
from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.engine.learner.fsdp import ShardingSettings, export_checkpoint, shard_units
from spell.engine.placement import ClusterResourceError, check_resources


def test_split_by_tokens_balances_and_keeps_every_sequence():
    lengths = [50, 10, 40, 30, 20, 20, 5]
    parts = split_by_tokens(lengths, 2)
    assert sorted(i for p in parts for i in p) == list(range(7))
    loads = [sum(lengths[i] for i in p) for p in parts]
    assert max(loads) - min(loads) <= 5
    assert split_by_tokens(lengths, 2) == parts  # deterministic
    assert split_by_tokens([3], 4) == [[0], [], [], []]


def test_shard_units_are_the_decoder_layers(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    units = shard_units(model)
    assert units == [f"model.layers.{i}" for i in range(model.config.num_hidden_layers)]
    with pytest.raises(ValueError, match="decoder layers"):
        shard_units(torch.nn.Linear(2, 2))


def test_settings_and_cluster_checks_are_actionable():
    with pytest.raises(ValueError, match="mixed_precision"):
        ShardingSettings(mixed_precision="fp8")
    check_resources(8, 1, 1, {"GPU": 8.0, "CPU": 64.0})
    with pytest.raises(ClusterResourceError, match=r"8 GPU \(the cluster has 4 free\).*engine.learner_ranks=8"):
        check_resources(8, 1, 1, {"GPU": 4.0, "CPU": 64.0})
    with pytest.raises(ClusterResourceError, match="CPU"):
        check_resources(2, 0, 4, {"CPU": 2.0})
    from spell.engine.placement import check_layout

    gpus8 = {"GPU": 8.0, "CPU": 64.0}
    check_layout("vllm", 1, 7, 1, 1, gpus8, rollout_replicas=8)  # replicas share the 7 learner GPUs
    with pytest.raises(ClusterResourceError, match="rollout_replicas"):
        check_layout("vllm", 2, 1, 1, 1, gpus8, rollout_replicas=5)  # 5 engines x TP 2 = 10 GPUs
    with pytest.raises(ClusterResourceError, match="8 GPU"):
        check_layout("vllm", 1, 8, 1, 1, gpus8)  # 1 rollout GPU + 8 ranks


def _batch(n=10, seed=0):
    rng = random.Random(seed)
    return [
        {"prompt_ids": [rng.randint(5, 200) for _ in range(rng.randint(4, 30))],
         "response_ids": [rng.randint(5, 200) for _ in range(rng.randint(1, 16))],
         "advantage": rng.uniform(-1, 1)}
        for _ in range(n)
    ]  # fmt: skip


def _first_step_bound(grad: torch.Tensor, weight: torch.Tensor, lr: float, eps: float = 1e-8) -> torch.Tensor:
    """How far two AdamW first steps may land apart when their gradients differ by at most delta.

    The first step moves each weight by lr * g / (|g| + eps) (bias-corrected m / sqrt(v)), plus weight decay
    alike in both. That map is flat away from 0: unless the rounding-level difference can flip the sign of g
    (|g| <= delta), the two steps agree to weight rounding; where it can, they may differ by up to 2 lr.
    delta = 1e-4 x the largest |g| of the tensor bounds reordered fp32 sums over two ranks (a few hundred ulps).
    """
    delta = 1e-4 * grad.abs().max()
    flat = lr * 2 * eps * delta / ((grad.abs() - delta).clamp(min=eps) ** 2)
    rounding = 4 * torch.finfo(torch.float32).eps * (weight.abs() + lr)
    return torch.where(grad.abs() <= delta, torch.full_like(grad, 2 * lr), flat.clamp(max=2 * lr)) + rounding


def _gradients(learner: Learner, batch: list[dict]) -> dict[str, torch.Tensor]:
    """The single process's gradient of the whole batch (after clipping, as the optimizer sees it)."""
    learner.optimizer.zero_grad(set_to_none=True)
    learner.backward([TrainSequence.from_dict(s) for s in batch])
    params = [p for p in learner.model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, learner.settings.grad_clip)
    grads = {n: p.grad.detach().clone() for n, p in learner.model.named_parameters()}
    learner.optimizer.zero_grad(set_to_none=True)
    return grads


def _assert_same_sharded_steps(group, single: Learner, settings: LearnerSettings, seeds: tuple[int, int]) -> dict:
    """Step 1: loss, gradient norm and the updated weights (within `_first_step_bound`) equal one process on the
    whole batch. Step 2 (the sharded AdamW state in use): loss and gradient norm, which the few sign-flipped
    elements of step 1 (|g| <= delta, so of next to no influence on the loss) move at second order only."""
    ref = single.model
    for step, seed in enumerate(seeds):
        batch = _batch(seed=seed)
        grads = _gradients(single, batch) if step == 0 else None
        a = single.train_step([TrainSequence.from_dict(s) for s in batch])
        b = group.train_step(batch)
        assert b["skipped"] == 0.0 and b["sequences"] == len(batch)
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5 if step == 0 else 1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4 if step == 0 else 1e-3)
        if grads is not None:
            full = group.full_state_dict()
            for k, v in ref.named_parameters():
                bound = _first_step_bound(grads[k], v.detach(), settings.lr)
                assert bool(((full[k] - v.detach()).abs() <= bound).all()), k
    return group.full_state_dict()


def _assert_rank0_broadcast_equals_full_weights(group, model_dir: str, full: dict) -> None:
    """The rollout copy's pull (learner rank 0 the root, several buckets) lands the trained weights bit for
    bit, in place, without the full state dict crossing Ray."""
    from spell.engine.sync.broadcast import sync_tensors
    from spell.engine.sync.sharded import LearnerWeightSync

    receiver = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert not all(torch.equal(receiver.state_dict()[k], full[k]) for k in full)  # trained: it must move
    sync = LearnerWeightSync(group, receiver, "gloo", bucket_bytes=16 << 10)
    pointers = {n: t.data_ptr() for n, t in sync_tensors(receiver).items()}
    stats = sync.pull(receiver)
    got = receiver.state_dict()
    assert all(torch.equal(got[k], full[k]) for k in full)
    assert {n: t.data_ptr() for n, t in sync_tensors(receiver).items()} == pointers
    assert stats.bytes == 4 * sum(t.numel() for t in sync_tensors(receiver).values()) and stats.buckets > 2


@pytest.mark.slow
@pytest.mark.ray
def test_two_gloo_ranks_match_one_process_and_export_round_trips(ray_local, tiny_model_dir, tmp_path):
    from spell.engine.learner.group import LearnerGroup

    settings = LearnerSettings(lr=1e-2, token_budget=96)  # small budget: ranks need different micro-batch counts
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    single = Learner(ref, settings, pad_id=int(ref.config.pad_token_id or 0))
    # the ranks take the head in 7-token chunks (engine.logprob_chunk_tokens) inside FSDP2's forward: the
    # same step as one process with the whole head
    chunked = dataclasses.replace(settings, logprob_chunk=7)
    group = LearnerGroup(
        tiny_model_dir, chunked, ShardingSettings(world_size=2, mixed_precision="fp32"), gpus_per_rank=0
    )
    try:
        assert [i["backend"] for i in group.info] == ["gloo", "gloo"]
        full = _assert_same_sharded_steps(group, single, settings, (0, 1))
        _assert_rank0_broadcast_equals_full_weights(group, tiny_model_dir, full)
        ckpt = tmp_path / "iter_0002"
        group.save(str(ckpt))
    finally:
        group.shutdown()
    out = export_checkpoint(ckpt, tmp_path / "exported")
    hf = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    exported = hf.state_dict()
    assert exported.keys() == full.keys()
    assert all(torch.equal(exported[k], full[k]) for k in full)  # bit-identical to the trained shards
    with pytest.raises(FileNotFoundError, match="not a sharded spell checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "x")


def test_slice_batch_covers_every_target_once():
    from spell.engine.learner.ulysses import slice_batch

    seqs = [TrainSequence([1, 2, 3], [4, 5], 1.0), TrainSequence([6], [7, 8, 9, 10], -1.0)]
    parts = [slice_batch(seqs, r, 3, pad_id=0) for r in range(3)]
    assert all(p["ids"].shape == (2, 2) for p in parts)  # width 5 -> 6, two positions per rank
    ids = torch.cat([p["ids"] for p in parts], 1)
    targets = torch.cat([p["targets"] for p in parts], 1)
    mask = torch.cat([p["target_mask"] for p in parts], 1)
    assert ids[0].tolist() == [1, 2, 3, 4, 5, 0] and torch.equal(targets[:, :-1], ids[:, 1:])
    assert targets[mask.bool()].tolist() == [4, 5, 7, 8, 9, 10]  # exactly the response tokens, in order
    assert torch.cat([p["positions"] for p in parts], 1)[0].tolist() == list(range(6))


@pytest.mark.slow
@pytest.mark.ray
def test_ulysses_sequence_parallel_matches_one_process(ray_local, tiny_model_dir):
    """Two ranks share every sequence (half the tokens each, attention over the whole of it through the
    all-to-all exchange): the same loss, gradient norm and weights as one process on the whole batch."""
    from spell.engine.learner.group import LearnerGroup

    settings = LearnerSettings(lr=1e-2, token_budget=96)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    single = Learner(ref, settings, pad_id=int(ref.config.pad_token_id or 0))
    sharding = ShardingSettings(world_size=2, mixed_precision="fp32", sequence_parallel=2)
    group = LearnerGroup(tiny_model_dir, dataclasses.replace(settings, logprob_chunk=3), sharding, gpus_per_rank=0)
    try:
        _assert_same_sharded_steps(group, single, settings, (10, 11))
    finally:
        group.shutdown()
    with pytest.raises(ValueError, match="must divide"):
        ShardingSettings(world_size=4, sequence_parallel=3)
