"""The unified policy loss: PPO clipped surrogate, token-mean over the *whole* batch (paper Eq. 10-12).

Role-blind: it sees per-token log-probs, a response mask and one advantage per sequence. The token-mean
divides by the token count of the whole batch (passed in as `total_tokens`), so splitting a batch into
micro-batches and summing their losses gives exactly the full-batch loss and gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossStats:
    """Sums, so micro-batch stats add up exactly; divide by `tokens` for means."""

    tokens: float = 0.0
    clipped_tokens: float = 0.0
    ratio_sum: float = 0.0
    kl_sum: float = 0.0
    pg_loss_sum: float = 0.0

    def __iadd__(self, other: LossStats) -> LossStats:
        self.tokens += other.tokens
        self.clipped_tokens += other.clipped_tokens
        self.ratio_sum += other.ratio_sum
        self.kl_sum += other.kl_sum
        self.pg_loss_sum += other.pg_loss_sum
        return self

    def means(self) -> dict[str, float]:
        n = max(self.tokens, 1.0)
        return {
            "tokens": self.tokens,
            "clip_fraction": self.clipped_tokens / n,
            "ratio_mean": self.ratio_sum / n,
            "kl_mean": self.kl_sum / n,
            "pg_loss": self.pg_loss_sum / n,
        }


def low_var_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || ref), clamped for stability (Schulman's 'approximating KL')."""
    log_ratio = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(-10.0, 10.0)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    total_tokens: float | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, LossStats]:
    """PPO clipped surrogate with per-sequence advantages broadcast to tokens.

    Shapes: logprobs, old_logprobs, response_mask: [B, T]; advantages: [B].
    `total_tokens` is the response-token count of the whole batch; None means this call is the batch.
    """
    mask = response_mask.to(logprobs.dtype)
    n_tokens = float(total_tokens) if total_tokens is not None else float(mask.sum().item())
    denom = max(n_tokens, 1.0)
    adv = advantages.to(logprobs.dtype).unsqueeze(-1).expand_as(logprobs)

    log_ratio = (logprobs - old_logprobs.detach()).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    pg_sum = (per_token * mask).sum()
    loss = pg_sum / denom

    kl_sum = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    if ref_logprobs is not None and kl_coef > 0:
        kl = low_var_kl(logprobs, ref_logprobs.detach())
        kl_sum = (kl * mask).sum()
        loss = loss + kl_coef * kl_sum / denom

    with torch.no_grad():
        was_clipped = (clipped > unclipped).to(mask.dtype) * mask
        stats = LossStats(
            tokens=float(mask.sum().item()),
            clipped_tokens=float(was_clipped.sum().item()),
            ratio_sum=float((ratio * mask).sum().item()),
            kl_sum=float(kl_sum.item()),
            pg_loss_sum=float(pg_sum.item()),
        )
    return loss, stats


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(target) under the *sampling* distribution softmax(logits / T) (spec Part A 'loss'; verl and TRL
    divide by the rollout temperature too): the ratio and the KL compare the policy that drew the samples.

    Shapes: logits [..., V], targets [...]. gather - logsumexp avoids a second [..., V] tensor of log-probs.
    """
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def sequence_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-prob of each next token: out[:, t] = log p(input_ids[:, t+1] | prefix), shape [B, T-1]."""
    return token_logprobs(logits[:, :-1, :], input_ids[:, 1:], temperature)
