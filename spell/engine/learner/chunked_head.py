"""The output head and log-softmax a chunk of tokens at a time (`engine.logprob_chunk_tokens`).

The loss needs log p(target) per response token, never the [tokens, vocab] logits; holding them (and
the fp32 log-softmax the backward keeps) is the largest term of a long-context step (`spell plan`: 72.5
GiB of 115 at the official 32000-token budget). Here the head's matmul, the logsumexp and the gather
run per chunk; the backward recomputes each chunk's logits from the saved hidden states (one extra
head matmul), so at most one chunk of logits exists at a time, as fused linear log-prob kernels do
(Liger's fused linear cross-entropy). Not in the paper: a memory layout; the loss and gradients are
those of the whole-batch head up to float rounding (tests/test_chunked_head.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def _logits(hidden: torch.Tensor, weight: torch.Tensor, temperature: float) -> torch.Tensor:
    """fp32 logits / T of one chunk; the matmul in the weight's (compute) dtype, as the head's own."""
    logits = (hidden.to(weight.dtype) @ weight.t()).float()
    return logits.div_(temperature) if temperature != 1.0 else logits


class ChunkedLogprobs(torch.autograd.Function):
    """log softmax(hidden @ W^T / T)[target] per row, chunk rows at a time, in forward and backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        chunk: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        n = hidden.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for s in range(0, n, chunk):
                logits = _logits(hidden[s : s + chunk], w, temperature)
                lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
                out[s : s + chunk] = logits.gather(-1, targets[s : s + chunk, None]).squeeze(-1) - lse[s : s + chunk]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.chunk, ctx.dtype = temperature, chunk, dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        t, chunk, dtype = ctx.temperature, ctx.chunk, ctx.dtype
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        w = weight.to(dtype)
        grad = grad.float()
        for s in range(0, hidden.shape[0], chunk):
            h, g = hidden[s : s + chunk].to(dtype), grad[s : s + chunk, None]  # cast once for both matmuls
            # d lp / d logits = onehot(target) - softmax, times the incoming gradient, over T
            d = _logits(h, w, t).sub_(lse[s : s + chunk, None]).exp_().mul_(-g)
            d.scatter_add_(-1, targets[s : s + chunk, None], g)
            if t != 1.0:
                d.div_(t)
            d16 = d.to(dtype)
            del d
            if grad_h is not None:
                grad_h[s : s + chunk] = d16 @ w
            if grad_w is not None and dtype == torch.float32:
                grad_w.addmm_(d16.t(), h)
            elif grad_w is not None:  # the bf16 product added into fp32 in place: no fp32 copy of it
                grad_w.add_(d16.t() @ h)
        return grad_h, None if grad_w is None else grad_w.to(weight.dtype), None, None, None, None


def chunked_token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float, chunk: int
) -> torch.Tensor:
    """log p(target) for hidden [..., H] and targets [...], without the [..., V] logits (fp32 out)."""
    dev = hidden.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype
    flat = hidden.reshape(-1, hidden.shape[-1])
    lp = ChunkedLogprobs.apply(flat, weight, targets.reshape(-1), float(temperature), int(chunk), dtype)
    return lp.view(hidden.shape[:-1])


@contextlib.contextmanager
def logprob_head(model: torch.nn.Module, targets: torch.Tensor, temperature: float, chunk: int) -> Iterator[None]:
    """While open, the model's head returns log p(target) per kept position instead of logits.

    The head is swapped inside the model's own forward (not called beside it), so FSDP2's hooks gather
    its weight as they do for the plain head. `targets` has the shape of the kept positions ([B, K]).
    """
    head = model.get_output_embeddings()  # type: ignore[operator]
    config = getattr(model, "config", None)
    if type(head) is not torch.nn.Linear or head.bias is not None:
        raise ValueError(
            f"engine.logprob_chunk_tokens needs a bias-free nn.Linear output head, this model has "
            f"{type(head).__name__}: set engine.logprob_chunk_tokens=0"
        )
    if getattr(config, "final_logit_softcapping", None):
        raise ValueError("engine.logprob_chunk_tokens: this model soft-caps its logits; set it to 0")

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        return chunked_token_logprobs(hidden, head.weight, targets, temperature, chunk)

    head.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        del head.forward
