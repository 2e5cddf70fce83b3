"""The role-blind learner and the policy: direction of updates, micro-batch invariance, NaN safety,
checkpoint round trip, LoRA."""

import json
import math
import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.engine.models.checkpoint import LATEST, latest_checkpoint, save_checkpoint
from spell.engine.models.loading import enable_activation_checkpointing
from spell.engine.policy import Policy, PolicySpec


def _seqs(n=8, seed=0, vocab=400):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = [rng.randrange(3, vocab) for _ in range(rng.randint(3, 30))]
        r = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 20))]
        out.append(TrainSequence(p, r, advantage=rng.uniform(-1, 1) if i else 1.0))
    return out


def _mean_lp(learner, seq):
    lp = learner.logprobs([seq])[0]
    return sum(lp) / len(lp)


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_advantage_sign_moves_sequence_logprob(model, sign):
    learner = Learner(model, LearnerSettings(lr=1e-3))
    seq = TrainSequence([5, 6, 7, 8], [9, 10, 11, 12, 13], advantage=sign)
    before = _mean_lp(learner, seq)
    m = learner.train_step([seq])
    after = _mean_lp(learner, seq)
    assert m["skipped"] == 0 and m["tokens"] == 5 and m["grad_norm"] > 0
    assert (after - before) * sign > 0


def test_loss_and_gradient_same_for_1_or_4_micro_batches(tiny_model_dir):
    seqs = _seqs()
    grads, losses, counts = [], [], []
    for budget in (100_000, 80):
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        learner = Learner(m, LearnerSettings(token_budget=budget))
        out = learner.backward(seqs)
        losses.append(out["loss"])
        counts.append(out["micro_batches"])
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert counts[0] == 1 and counts[1] >= 4
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_old_logprobs_give_ratio_and_clipping(model):
    learner = Learner(model, LearnerSettings())
    seq = _seqs(1)[0]
    lp = learner.logprobs([seq])[0]
    shifted = TrainSequence(seq.prompt_ids, seq.response_ids, 1.0, old_logprobs=[x - 1.0 for x in lp])
    m = learner.backward([shifted])
    assert m["ratio_mean"] == pytest.approx(math.e, rel=1e-3) and m["clip_fraction"] == 1.0
    with pytest.raises(ValueError, match="old_logprobs"):
        learner.backward([TrainSequence([1, 2], [3, 4], 1.0, old_logprobs=[0.0])])


@pytest.mark.parametrize("bad_advantage", [float("nan"), float("inf"), float("-inf"), 3e38])
def test_non_finite_gradient_skips_step_and_keeps_weights(model, bad_advantage):
    """NaN, +-inf, or a finite advantage whose gradient overflows: step skipped, counted, weights untouched."""
    learner = Learner(model, LearnerSettings(lr=1e-2))
    before = [p.detach().clone() for p in model.parameters()]
    bad = TrainSequence([5, 6], [7, 8], advantage=bad_advantage)
    m = learner.train_step([bad])
    assert m["skipped"] == 1.0 and learner.skipped_steps == 1 and learner.steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert learner.train_step([TrainSequence([5, 6], [7, 8], 1.0)])["skipped"] == 0.0


def test_padding_fraction_small_on_mixed_lengths(model):
    rng = random.Random(1)
    seqs = [TrainSequence([5] * rng.randint(10, 400), [6] * rng.randint(5, 100), 1.0) for _ in range(40)]
    m = Learner(model, LearnerSettings(token_budget=2048)).backward(seqs)
    assert m["padding_fraction"] < 0.10


def test_policy_checkpoint_round_trip_identical_logits(tiny_model_dir, tmp_path):
    spec = PolicySpec(model_path=tiny_model_dir, learner=LearnerSettings(lr=1e-3))
    pol = Policy(spec)
    seqs = [s.__dict__ for s in _seqs(4)]
    pol.train_step(seqs)
    path = pol.save(str(tmp_path / "ckpt"), "step_1", {"iteration": 1})
    assert latest_checkpoint(tmp_path / "ckpt") == tmp_path / "ckpt" / "step_1"
    hf = AutoModelForCausalLM.from_pretrained(f"{path}/model", use_safetensors=True)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, pol.model.eval()(ids).logits, atol=0, rtol=0)
    resumed = Policy(spec, checkpoint=path)
    assert resumed.learner.steps == 1
    assert resumed.learner.optimizer.state_dict()["state"].keys() == pol.learner.optimizer.state_dict()["state"].keys()
    # the next step from the resumed policy equals the next step of the original one
    m1, m2 = pol.train_step(seqs), resumed.train_step(seqs)
    assert m1["loss"] == pytest.approx(m2["loss"], abs=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(resumed.model(ids).logits, pol.model(ids).logits, atol=1e-6, rtol=0)
    assert json.loads((tmp_path / "ckpt" / "step_1" / "state.json").read_text())["iteration"] == 1


def test_interrupted_checkpoint_never_becomes_latest(tiny_model_dir, tmp_path):
    pol = Policy(PolicySpec(model_path=tiny_model_dir))
    pol.save(str(tmp_path), "step_1")

    class Boom(Exception):
        pass

    class BrokenTokenizer:
        def save_pretrained(self, *_a, **_k):
            raise Boom

    with pytest.raises(Boom):
        save_checkpoint(tmp_path, "step_2", pol.model, BrokenTokenizer(), None, {})
    assert (tmp_path / LATEST).read_text() == "step_1"
    assert latest_checkpoint(tmp_path).name == "step_1"
    assert not (tmp_path / "step_2").exists()


def test_policy_generate_returns_plain_python(tiny_model_dir):
    pol = Policy(PolicySpec(model_path=tiny_model_dir))
    out = pol.generate(["hi", "there"], {"n": 2, "max_new_tokens": 4, "temperature": 0.7, "seed": 1})
    assert isinstance(out[0][0], dict) and isinstance(out[0][0]["token_ids"][0], int)
    assert pol.count_tokens(["a b c"])[0] >= 1
    info = pol.info()
    assert info["device"] == "cpu" and info["dtype"] == "float32" and info["parameters"] > 0


def test_lora_trains_adapters_only_and_saves_merged(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    pol = Policy(PolicySpec(model_path=tiny_model_dir, lora_rank=4, learner=LearnerSettings(lr=1e-2)))
    trainable = [n for n, p in pol.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    seq = {"prompt_ids": [5, 6, 7], "response_ids": [8, 9], "advantage": 1.0}
    before = pol.logprobs([seq])[0]
    pol.train_step([seq])
    pol.train_step([seq])
    after = pol.logprobs([seq])[0]
    assert sum(after) > sum(before)
    path = pol.save(str(tmp_path), "lora")
    hf = AutoModelForCausalLM.from_pretrained(f"{path}/model", use_safetensors=True)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, pol.model.eval()(ids).logits, atol=1e-5, rtol=1e-4)
    assert any("lora" in n for n, _ in pol.model.named_parameters())  # saving did not unwrap the live model


def test_gradient_checkpointing_gives_the_same_gradient(tiny_model_dir):
    seqs = _seqs(4)
    grads = []
    for ckpt in (False, True):
        m = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        if ckpt:
            enable_activation_checkpointing(m)
        Learner(m, LearnerSettings()).backward(seqs)
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_packed_rows_give_the_padded_loss_and_gradient(tiny_model_dir):
    """Packing (no padding, block-diagonal attention) changes nothing but the memory: same log-probs, loss
    and gradients as the padded micro-batches."""
    from spell.engine.batching import pack_first_fit

    rng = random.Random(3)
    seqs = [
        TrainSequence([rng.randint(5, 200) for _ in range(rng.randint(3, 40))],
                      [rng.randint(5, 200) for _ in range(rng.randint(1, 20))], rng.uniform(-1, 1))
        for _ in range(9)
    ]  # fmt: skip
    grads, lps, losses = [], [], []
    for packing in (False, True):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
        learner = Learner(model, LearnerSettings(token_budget=128, packing=packing))
        lps.append(learner.logprobs(seqs))
        m = learner.backward(seqs)
        losses.append(m["loss"])
        grads.append([p.grad.clone() for p in model.parameters()])
        if packing:
            assert m["padding_fraction"] == 0.0 and m["micro_batches"] < len(seqs)
    for a, b in zip(*lps, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    for ga, gb in zip(*grads, strict=True):
        torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-4)
    assert pack_first_fit([5, 9, 3, 4, 20], 12) == [[4], [1, 2], [0, 3]]  # first fit, longest first
