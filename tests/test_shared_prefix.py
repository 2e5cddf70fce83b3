"""Shared-prefix rows (engine.shared_prefix): the G answers of a prompt over one copy of it give the same
per-token log-probs, loss and gradients as the separate layout, with the prompt computed once."""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.engine.learner.layouts import SHARED, micro_batches
from spell.engine.learner.shared_prefix import allowed, prefix_units, segments, shared_row


def _groups(n_groups=3, g=4, seed=0, vocab=400):
    """Responder-like groups: G answers of different lengths after one prompt each, plus a lone sequence."""
    rng = random.Random(seed)
    seqs = []
    for _ in range(n_groups):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(10, 40))]
        for _ in range(g):
            resp = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 12))]
            seqs.append(TrainSequence(list(prompt), resp, advantage=rng.uniform(-1, 1)))
    seqs.append(TrainSequence([5, 6, 7], [8, 9], advantage=0.5))
    rng.shuffle(seqs)
    return seqs


def test_mask_rule_prompt_causal_answers_see_prompt_and_themselves():
    prompts, responses = [[1, 2, 3], [1, 2, 3], [4, 5]], [[6, 7], [8], [9]]
    units = prefix_units(prompts, responses, budget=100)
    assert units == [[0, 1], [2]]
    ids, block, answer, pos = segments(units, prompts, responses)
    assert ids == [1, 2, 3, 6, 7, 8, 4, 5, 9] and pos == [0, 1, 2, 3, 4, 3, 0, 1, 2]
    b, a = torch.tensor(block), torch.tensor(answer)
    t = torch.arange(len(ids))
    ok = allowed(b, a, t[:, None], t[None, :])
    assert ok[4].tolist() == [True, True, True, True, True, False, False, False, False]  # r1[1]: prompt + r1
    assert ok[5].tolist() == [True, True, True, False, False, True, False, False, False]  # r2: prompt + itself
    assert ok[8].tolist() == [False] * 6 + [True, True, True]  # the next block sees only its own
    row = shared_row(units, prompts, responses, range(3))
    # the first token of both answers is predicted from the last prompt position (index 2)
    assert row["keep"].tolist() == [2, 3, 2, 7] and row["targets"].tolist() == [6, 7, 8, 9]


def test_a_group_larger_than_the_budget_is_split_with_its_prompt():
    prompts = [[1] * 10] * 4
    responses = [[2] * 5] * 4
    assert prefix_units(prompts, responses, budget=21) == [[0, 1], [2, 3]]  # 10 + 5 + 5 per chunk


def _learner(tiny_model_dir, **kw):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    return Learner(model, LearnerSettings(**kw), pad_id=int(model.config.pad_token_id or 0))


@pytest.mark.parametrize("budget", [100_000, 120])
def test_same_logprobs_loss_and_gradients_as_separate_rows(tiny_model_dir, budget):
    """Per-token log-probs within 1e-5 (fp32); gradients within 1e-5 of the largest element: the same sums
    in another order (the prompt's gradient arrives once, summed over its answers, instead of G times)."""
    seqs = _groups()
    ref = _learner(tiny_model_dir, token_budget=budget)
    shared = _learner(tiny_model_dir, token_budget=budget, shared_prefix=True)
    assert shared.layout == SHARED
    for a, b in zip(ref.logprobs(seqs), shared.logprobs(seqs), strict=True):
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=1e-5, rtol=0)
    ma, mb = ref.backward(seqs), shared.backward(seqs)
    assert mb["loss"] == pytest.approx(ma["loss"], abs=1e-6)
    assert mb["computed_tokens"] < 0.6 * mb["sequence_tokens"]  # each prompt once instead of four times
    for (name, pa), pb in zip(ref.model.named_parameters(), shared.model.parameters(), strict=True):
        scale = float(pa.grad.abs().max())
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-5 * scale + 1e-9, rtol=0, msg=name)


def test_packing_and_shared_prefix_agree(tiny_model_dir):
    seqs = _groups(seed=1)
    packed = _learner(tiny_model_dir, token_budget=150, packing=True)
    shared = _learner(tiny_model_dir, token_budget=150, packing=True, shared_prefix=True)
    for a, b in zip(packed.logprobs(seqs), shared.logprobs(seqs), strict=True):
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=1e-5, rtol=0)
    rows = micro_batches(seqs, SHARED, 150)
    assert sorted(i for r in rows for i in r) == list(range(len(seqs)))


@pytest.mark.slow
@pytest.mark.ray
def test_sharded_learner_keeps_groups_on_one_rank_and_takes_the_same_step(ray_local, tiny_model_dir):
    from spell.engine.learner.fsdp import ShardingSettings
    from spell.engine.learner.group import LearnerGroup

    seqs = _groups(seed=2)
    settings = LearnerSettings(lr=1e-2, token_budget=200, shared_prefix=True)
    single = _learner(tiny_model_dir, lr=1e-2, token_budget=200)  # separate rows, one process
    group = LearnerGroup(tiny_model_dir, settings, ShardingSettings(world_size=2, mixed_precision="fp32"), 0)
    try:
        batch = [{"prompt_ids": s.prompt_ids, "response_ids": s.response_ids, "advantage": s.advantage} for s in seqs]
        parts = group._split(batch)
        for p in (tuple(s.prompt_ids) for s in seqs):
            assert sum(any(tuple(batch[i]["prompt_ids"]) == p for i in part) for part in parts) == 1
        a, b = single.train_step(seqs), group.train_step(batch)
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    finally:
        group.shutdown()


def test_device_masks_equal_the_reference_rule():
    """Packed rows' masks are built where the model runs: boolean for SDPA, additive for eager, both the
    block-causal reference; a flex BlockMask computes only the allowed tiles of the same rule."""
    from spell.engine.learner.packing import block_causal_mask, block_ids
    from spell.engine.learner.shared_prefix import device_mask

    lengths = [5, 3, 4]
    ref = block_causal_mask(lengths) == 0
    answer = torch.full((sum(lengths),), -1)
    cpu = torch.device("cpu")
    assert torch.equal(device_mask(block_ids(lengths), answer, "sdpa", cpu, torch.float32), ref)
    eager = device_mask(block_ids(lengths), answer, "eager", cpu, torch.float32)
    assert torch.equal(eager == 0, ref) and eager.dtype == torch.float32
    long = [200, 200, 112]  # 4 x 4 tiles of 128
    flex = device_mask(block_ids(long), torch.full((512,), -1), "flex_attention", cpu, torch.float32)
    tiles = (block_causal_mask(long) == 0)[0, 0].reshape(4, 128, 4, 128).any(3).any(1)
    assert torch.equal(flex.to_dense()[0, 0].bool(), tiles) and int(tiles.sum()) < 10  # of 16 tiles


@pytest.mark.parametrize("layout", [SHARED, "packed"])
def test_blocks_computed_apart_give_the_whole_rows_logprobs_and_gradients(tiny_model_dir, layout):
    """A single-process learner under a dense mask computes a row's blocks apart (row_blocks): the same
    log-probs and gradients as the whole row under its block mask, in the row's order; a packed block (one
    sequence) goes without a mask."""
    from spell.engine.learner.layouts import row_batch
    from spell.engine.learner.shared_prefix import row_blocks

    seqs = _groups(seed=2)
    learner = _learner(tiny_model_dir, shared_prefix=layout == SHARED, packing=layout != SHARED)
    row = row_batch(seqs, layout, varlen=False)["packed"]
    weights = torch.randn(row["targets"].numel(), generator=torch.Generator().manual_seed(0))
    grads, flats = [], []
    for apart in (False, True):
        learner.model.zero_grad(set_to_none=True)
        if apart:
            parts = row_blocks(row)
            assert len(parts) == (4 if layout == SHARED else len(seqs))  # one per prompt group / sequence
            assert all((p["attention_mask"] is None) == (layout != SHARED) for _, p in parts)
            order = torch.argsort(torch.cat([sel for sel, _ in parts]))
            flat = torch.cat([learner._row_logprobs(learner.model, p) for _, p in parts])[order]
        else:
            flat = learner._row_logprobs(learner.model, row)
        (flat * weights).sum().backward()
        flats.append(flat.detach())
        grads.append([p.grad.clone() for p in learner.model.parameters()])
    torch.testing.assert_close(flats[1], flats[0], atol=1e-5, rtol=0)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5 * float(a.abs().max()) + 1e-9, rtol=0)
