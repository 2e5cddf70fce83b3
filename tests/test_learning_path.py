"""Part A 'loss' and the LoRA row of 'Also binding': what the learner optimises is what the paper trains.

Log-probs of the sampling policy (logits / T), fp32 master weights under a bf16 compute dtype, the KL
reference fixed to the run's initial model across resume, and a resumed LoRA run continuing its adapter.
"""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from spell.config import ConfigError, SpellConfig, load_config
from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.engine.policy import Policy, PolicySpec
from spell.loss import sequence_logprobs


def _batch(seed: int, vocab: int = 400, n: int = 4) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"prompt_ids": [rng.randrange(3, vocab) for _ in range(rng.randint(4, 20))],
         "response_ids": [rng.randrange(3, vocab) for _ in range(rng.randint(2, 10))],
         "advantage": a}
        for a in (1.0, -1.0, 0.5, -0.5)[:n]
    ]  # fmt: skip


def test_logprobs_are_those_of_the_sampling_temperature(tiny_model_dir):
    """verl and TRL divide the logits by the rollout temperature before the ratio; so does the learner."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    seq = TrainSequence([5, 6, 7, 8, 9], [10, 11, 12], advantage=1.0)
    ids = torch.tensor([seq.prompt_ids + seq.response_ids])
    with torch.no_grad():
        logits = model(ids).logits
    for t in (0.7, 1.0):
        got = Learner(model, LearnerSettings(temperature=t)).logprobs([seq])[0]
        want = sequence_logprobs(logits / t, ids)[0, -3:]
        torch.testing.assert_close(torch.tensor(got), want, atol=1e-5, rtol=1e-5)
    cold, warm = (Learner(model, LearnerSettings(temperature=t)).logprobs([seq])[0] for t in (0.7, 1.0))
    assert max(abs(a - b) for a, b in zip(cold, warm, strict=True)) > 1e-3
    greedy = Learner(model, LearnerSettings(temperature=0.0)).logprobs([seq])[0]
    assert greedy == pytest.approx(warm, abs=1e-6)  # a greedy rollout has no distribution: plain softmax
    assert PolicySpec.from_config(SpellConfig()).learner.temperature == SpellConfig().rollout.temperature


def _moved_share(policy: Policy, steps: int) -> float:
    start = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    batch = _batch(0, vocab=policy.model.config.vocab_size)
    for _ in range(steps):
        assert policy.train_step(batch)["skipped"] == 0
    moved = sum(int((p.detach() != start[n]).sum()) for n, p in policy.model.named_parameters())
    return moved / sum(p.numel() for p in start.values())


def test_bf16_compute_keeps_fp32_master_weights(tiny_model_dir):
    """With bf16 weights updated in place, 80 steps at lr 2e-6 moved 3.5% of the elements (fp32: 83.5%): the
    updates round away. Masters in fp32 under bf16 autocast move as many elements as fp32 does."""
    settings = LearnerSettings(lr=2e-6)
    fp32 = Policy(PolicySpec(tiny_model_dir, dtype="float32", device="cpu", learner=settings))
    bf16 = Policy(PolicySpec(tiny_model_dir, dtype="bfloat16", device="cpu", learner=settings))
    assert bf16.info()["dtype"] == "bfloat16" and bf16.info()["master_dtype"] == "float32"
    share32, share16 = _moved_share(fp32, 80), _moved_share(bf16, 80)
    assert share32 > 0.5 and share16 >= 0.95 * share32, (share16, share32)
    seq = TrainSequence(*(_batch(1)[0][k] for k in ("prompt_ids", "response_ids")), advantage=1.0)
    lp16, lp32 = bf16.learner.logprobs([seq])[0], fp32.learner.logprobs([seq])[0]
    # the forward really ran in bf16: log-probs differ at bf16 rounding, not at fp32 rounding
    assert 1e-6 < max(abs(a - b) for a, b in zip(lp16, lp32, strict=True)) < 0.1
    generator_only = Policy(PolicySpec(tiny_model_dir, dtype="bfloat16", device="cpu", train=False))
    assert generator_only.info()["master_dtype"] == "bfloat16"  # evaluation keeps no fp32 copy


def _state(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}


def _resumed_equals_uninterrupted(spec: PolicySpec, tmp_path) -> tuple[dict, dict, dict, dict]:
    """Step 1, checkpoint, step 2 in one policy; step 2 again in a policy built from the checkpoint."""
    torch.manual_seed(0)
    first = Policy(spec)
    first.train_step(_batch(1), iteration=1)
    ckpt = first.save(str(tmp_path), "iter_0001")
    m_a = first.train_step(_batch(2), iteration=2)
    resumed = Policy(spec, checkpoint=ckpt)
    m_b = resumed.train_step(_batch(2), iteration=2)
    return m_a, m_b, _state(first), _state(resumed)


def test_kl_reference_is_the_initial_model_across_resume(tiny_model_dir, tmp_path):
    """Part A 'loss': KL against the run's initial model, never the checkpoint a resumed run (or a rebuilt
    actor) starts from. Same process, same arithmetic: the resumed step is bit-identical."""
    spec = PolicySpec(tiny_model_dir, device="cpu", learner=LearnerSettings(lr=1e-2, kl_coef=0.5))
    m_a, m_b, w_a, w_b = _resumed_equals_uninterrupted(spec, tmp_path)
    assert m_a["kl_mean"] > 1e-6  # after one step of lr 1e-2 the policy has left the reference
    assert m_b["kl_mean"] == m_a["kl_mean"] and m_b["loss"] == m_a["loss"]
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)


def test_kl_with_a_sharded_learner_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"kl_coef > 0 with engine\.learner_ranks > 1"):
        load_config(None, ["optim.kl_coef=0.1", "engine.learner_ranks=2", "engine.gpus_per_rank=0"])


def test_lora_resume_continues_the_same_adapter(tiny_model_dir, tmp_path):
    """Part A 'Also binding': the checkpoint keeps the adapter and its AdamW state, so an interrupted LoRA run
    equals an uninterrupted one (a fresh random adapter with the old moments applied to it would not)."""
    pytest.importorskip("peft")
    spec = PolicySpec(tiny_model_dir, device="cpu", lora_rank=4, learner=LearnerSettings(lr=1e-2))
    m_a, m_b, w_a, w_b = _resumed_equals_uninterrupted(spec, tmp_path)
    assert w_a.keys() == w_b.keys() and all("lora" in k for k in w_a)
    assert m_b["loss"] == m_a["loss"] and all(torch.equal(w_a[k], w_b[k]) for k in w_a)
    assert (tmp_path / "iter_0001" / "adapter" / "adapter_model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "iter_0001" / "model", use_safetensors=True)
    assert merged.config.vocab_size > 0  # the merged export still loads without peft
