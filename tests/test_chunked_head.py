"""The chunked head + log-softmax (engine.logprob_chunk_tokens): the log-probs, loss and gradients of the
whole-batch head in every layout, with at most one chunk of logits alive; the model's head afterwards."""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from spell.engine.learner.chunked_head import chunked_token_logprobs, logprob_head
from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.loss import token_logprobs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunks_give_the_whole_heads_logprobs_and_gradients(temperature):
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    t, g = torch.randint(0, 50, (37,)), torch.randn(37, dtype=torch.float64)
    ref = token_logprobs(h @ w.t(), t, temperature).double()
    (ref * g).sum().backward()
    ref_h, ref_w = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    lp = chunked_token_logprobs(h, w, t, temperature, chunk=8)  # 8 does not divide 37: a short last chunk
    (lp.double() * g).sum().backward()
    # the fp32 logits of both (fp32 out): identical values up to fp32 rounding of the logsumexp
    torch.testing.assert_close(lp.double(), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(h.grad, ref_h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.grad, ref_w, atol=1e-5, rtol=1e-5)


def test_under_bf16_autocast_the_matmuls_run_in_bf16_like_the_heads():
    torch.manual_seed(1)
    h = torch.randn(20, 32, requires_grad=True)
    w = torch.randn(64, 32, requires_grad=True)
    t = torch.randint(0, 64, (20,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = token_logprobs(torch.nn.functional.linear(h, w), t)
        lp = chunked_token_logprobs(h, w, t, 1.0, chunk=6)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, ref, atol=0, rtol=0)  # the same bf16 logits, the same fp32 reduction
    ref.sum().backward()
    ref_w = w.grad.clone()
    w.grad = None
    lp.sum().backward()
    assert w.grad.dtype == torch.float32
    # bf16 gradients of the logits (8 bits of mantissa), summed over 20 rows in another order
    torch.testing.assert_close(w.grad, ref_w, atol=2e-2 * float(ref_w.abs().max()), rtol=0)


def _seqs(seed=0, vocab=400):
    rng = random.Random(seed)
    seqs = []
    for _ in range(3):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(8, 30))]
        seqs += [TrainSequence(list(prompt), [rng.randrange(3, vocab) for _ in range(rng.randint(1, 12))],
                               advantage=rng.uniform(-1, 1)) for _ in range(3)]  # fmt: skip
    return seqs


def _learner(tiny_model_dir, tied=False, **kw):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    return Learner(model, LearnerSettings(**kw), pad_id=int(model.config.pad_token_id or 0))


@pytest.mark.parametrize(
    "layout", [dict(shared_prefix=False), dict(packing=True, shared_prefix=False), dict(shared_prefix=True)]
)
@pytest.mark.parametrize("tied", [False, True])
def test_every_layout_takes_the_same_step_with_a_chunked_head(tiny_model_dir, layout, tied):
    seqs = _seqs()
    whole = _learner(tiny_model_dir, tied, token_budget=90, temperature=0.8, **layout)
    chunked = _learner(tiny_model_dir, tied, token_budget=90, temperature=0.8, logprob_chunk=5, **layout)
    for a, b in zip(whole.logprobs(seqs), chunked.logprobs(seqs), strict=True):
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=1e-5, rtol=0)
    ma, mb = whole.backward(seqs), chunked.backward(seqs)
    assert mb["loss"] == pytest.approx(ma["loss"], abs=1e-6)
    for (name, pa), pb in zip(whole.model.named_parameters(), chunked.model.parameters(), strict=True):
        scale = float(pa.grad.abs().max())
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-5 * scale + 1e-9, rtol=0, msg=name)
    ids = torch.tensor([[5, 6, 7]])
    assert chunked.model(input_ids=ids).logits.shape[-1] == chunked.model.config.vocab_size  # the head is back


def test_the_head_comes_back_after_an_error_and_a_biased_head_is_refused(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(RuntimeError), logprob_head(model, torch.tensor([[1, 2]]), 1.0, 4):
        model(input_ids=torch.tensor([[5, 6, 7]]))  # targets of the wrong shape for 3 positions
    assert "forward" not in vars(model.lm_head)
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
    refused = pytest.raises(ValueError, match=r"engine\.logprob_chunk_tokens=0")
    with refused, logprob_head(model, torch.ones(1), 1.0, 4):
        pass


def test_a_lora_policy_takes_the_same_step_with_a_chunked_head(tiny_model_dir):
    """The LoRA preset chunks its head: through peft's wrapper the frozen head is found and swapped, and the
    adapters get the whole head's gradients."""
    from spell.engine.models.loading import wrap_lora

    seqs = _seqs(seed=4)[:5]
    grads = []
    for chunk in (0, 3):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
        model = wrap_lora(base, 4, 8.0, None)
        for name, p in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: give A a gradient to compare too
                torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(1))
        Learner(model, LearnerSettings(logprob_chunk=chunk)).backward(seqs)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].numel() > 0 and grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5 * float(grads[0].abs().max()), rtol=0)
