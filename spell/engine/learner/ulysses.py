"""Ulysses sequence parallelism (Jacobs et al. 2023): a long sequence is cut into `P` contiguous slices,
one per rank of a sequence-parallel group; everything but attention is per-token, so each rank runs the
model on its slice alone. Around attention, an all-to-all trades the sequence split for a head split:
each rank then attends over the *whole* sequence for `heads / P` heads, and a second all-to-all trades
back. Memory for activations drops by `P`, which is what 16K-100K-token training needs.

Rows are right-padded to a multiple of `P`, so causal attention alone keeps real tokens away from
padding (a padded position only ever follows the real ones). On NCCL the exchange is `all_to_all`; gloo
(CPU tests) has none, so there it is emulated with an all-gather (same result, more traffic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

ATTENTION = "spell_ulysses"
_GROUP: Any = None  # this rank's sequence-parallel process group, set by `set_group`


def set_group(group: Any) -> None:
    global _GROUP
    _GROUP = group


def _exchange(x: torch.Tensor, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    """Split `x` along `scatter_dim` over the group, concatenate what arrives along `gather_dim`."""
    p = dist.get_world_size(_GROUP)
    if dist.get_backend(_GROUP) == "nccl":
        send = [c.contiguous() for c in x.chunk(p, dim=scatter_dim)]
        recv = [torch.empty_like(c) for c in send]
        dist.all_to_all(recv, send, group=_GROUP)
    else:
        full = [torch.empty_like(x) for _ in range(p)]
        dist.all_gather(full, x.contiguous(), group=_GROUP)
        me = dist.get_rank(_GROUP)
        recv = [f.chunk(p, dim=scatter_dim)[me] for f in full]
    return torch.cat(recv, dim=gather_dim)


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scatter_dim: int, gather_dim: int) -> torch.Tensor:
        ctx.dims = (scatter_dim, gather_dim)
        return _exchange(x, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        scatter_dim, gather_dim = ctx.dims
        return _exchange(grad, gather_dim, scatter_dim), None, None


def all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    return _AllToAll.apply(x, scatter_dim, gather_dim)


def ulysses_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Hugging Face attention interface: q/k/v [B, heads, S/P, D] in, [B, S/P, heads, D] out.

    The mask Hugging Face built for the local slice is ignored: attention is causal over the gathered
    sequence (see the module doc on padding)."""
    p = dist.get_world_size(_GROUP)
    heads, kv_heads = query.shape[1], key.shape[1]
    if heads % p:
        raise ValueError(f"{heads} attention heads do not split over sequence_parallel={p}")
    if kv_heads % p:  # fewer KV heads than ranks: give every rank the KV heads its query heads use
        key = key.repeat_interleave(heads // kv_heads, dim=1)
        value = value.repeat_interleave(heads // kv_heads, dim=1)
    q, k, v = (all_to_all(t, scatter_dim=1, gather_dim=2) for t in (query, key, value))  # [B, h/P, S, D]
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, dropout_p=dropout)
    out = all_to_all(out, scatter_dim=2, gather_dim=1)  # [B, heads, S/P, D]
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, ulysses_attention)
    return ATTENTION


def slice_batch(seqs: Sequence[Any], rank: int, size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """This rank's slice of right-padded rows, with targets and masks in the same local coordinates.

    Position t of a row predicts token t+1; `target_mask[t]` is 1 where that token is a response token.
    """
    widths = [len(s.prompt_ids) + len(s.response_ids) for s in seqs]
    width = -(-max(widths) // size) * size  # a multiple of the group size
    ids = torch.full((len(seqs), width + 1), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.float32)
    old = torch.zeros((len(seqs), width), dtype=torch.float32)
    has_old = torch.zeros(len(seqs), dtype=torch.bool)
    for row, s in enumerate(seqs):
        full = list(s.prompt_ids) + list(s.response_ids)
        ids[row, : len(full)] = torch.tensor(full)
        start, n = len(s.prompt_ids) - 1, len(s.response_ids)
        mask[row, start : start + n] = 1.0
        if s.old_logprobs is not None:
            old[row, start : start + n] = torch.tensor(s.old_logprobs, dtype=torch.float32)
            has_old[row] = True
    chunk = width // size
    lo, hi = rank * chunk, (rank + 1) * chunk
    return {
        "ids": ids[:, lo:hi],
        "positions": torch.arange(lo, hi).expand(len(seqs), -1),
        "targets": ids[:, lo + 1 : hi + 1],
        "target_mask": mask[:, lo:hi],
        "old": old[:, lo:hi],
        "has_old": has_old,
        "adv": torch.tensor([s.advantage for s in seqs], dtype=torch.float32),
        "tokens": torch.tensor(len(seqs) * width),
        "real": torch.tensor(sum(widths)),
    }
