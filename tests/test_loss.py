"""Part A 'loss': PPO clip 0.2/0.2, token-mean over the whole batch, micro-batch invariance, KL option."""

import pytest
import torch

from spell.loss import LossStats, low_var_kl, policy_loss, sequence_logprobs


def _batch(seed=0, b=8, t=12):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=g) * 3
    old = lp + 0.3 * torch.randn(b, t, generator=g)
    adv = torch.randn(b, generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    return lp, old, adv, mask


def test_microbatch_invariance():
    """The loss and gradient of one batch equal those of the same batch in 4 micro-batches (1e-6)."""
    lp, old, adv, mask = _batch()
    full_lp = lp.clone().requires_grad_(True)
    full, _ = policy_loss(full_lp, old, adv, mask)
    full.backward()

    split_lp = lp.clone().requires_grad_(True)
    total = float(mask.sum())
    acc, stats = 0.0, LossStats()
    for idx in torch.arange(8).chunk(4):
        part, s = policy_loss(split_lp[idx], old[idx], adv[idx], mask[idx], total_tokens=total)
        part.backward()
        acc += part.item()
        stats += s
    assert acc == pytest.approx(full.item(), abs=1e-6)
    torch.testing.assert_close(split_lp.grad, full_lp.grad, atol=1e-6, rtol=0)
    assert stats.tokens == total


def test_ratio_one_is_plain_policy_gradient():
    lp, _, adv, mask = _batch(1)
    loss, stats = policy_loss(lp, lp.clone(), adv, mask)
    expected = -(adv[:, None] * mask).sum() / mask.sum()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert stats.means()["clip_fraction"] == 0.0 and stats.means()["ratio_mean"] == pytest.approx(1.0)


def test_clipping_stops_gradient_beyond_bounds():
    old = torch.zeros(1, 2)
    lp = torch.tensor([[0.5, -0.5]], requires_grad=True)  # ratios e^0.5 = 1.65, e^-0.5 = 0.61
    mask = torch.ones(1, 2)
    loss, stats = policy_loss(lp, old, torch.tensor([1.0]), mask)
    loss.backward()
    assert lp.grad[0, 0] == 0.0  # positive advantage, ratio > 1.2: clipped
    assert lp.grad[0, 1] != 0.0  # ratio < 0.8 with positive advantage: unclipped side is smaller
    assert stats.clipped_tokens == 1.0


def test_kl_term_only_when_coefficient_positive():
    lp, old, adv, mask = _batch(2)
    ref = lp + 0.5
    base, _ = policy_loss(lp, old, adv, mask)
    same, _ = policy_loss(lp, old, adv, mask, ref_logprobs=ref, kl_coef=0.0)
    more, stats = policy_loss(lp, old, adv, mask, ref_logprobs=ref, kl_coef=0.1)
    assert same.item() == base.item() and more.item() > base.item() and stats.kl_sum > 0
    assert torch.all(low_var_kl(lp, lp) == 0)


class TinyLM(torch.nn.Module):
    def __init__(self, vocab=16, dim=8):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.out = torch.nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.out(torch.tanh(self.emb(ids)))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradient_step_moves_logprob_with_advantage(sign):
    """A positive advantage raises the sequence's log-probability; a negative one lowers it."""
    torch.manual_seed(0)
    model = TinyLM()
    ids = torch.tensor([[1, 5, 7, 3, 2]])
    mask = torch.tensor([[0, 1, 1, 1]], dtype=torch.float32)  # first target is the 'prompt'

    def seq_lp():
        return (sequence_logprobs(model(ids), ids) * mask).sum().item()

    before = seq_lp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    lp = sequence_logprobs(model(ids), ids)
    loss, _ = policy_loss(lp, lp.detach(), torch.tensor([sign]), mask)
    loss.backward()
    opt.step()
    after = seq_lp()
    assert (after - before) * sign > 0


def test_sequence_logprobs_match_log_softmax():
    logits = torch.randn(2, 5, 11)
    ids = torch.randint(0, 11, (2, 5))
    ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(sequence_logprobs(logits, ids), ref)
