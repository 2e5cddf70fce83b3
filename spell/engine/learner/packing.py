"""Sequence packing for the learner: several trajectories in one row with no padding (long contexts).

Each packed row restarts position ids per sequence, and attention is kept inside each sequence: with
flash-attn the position ids alone select its variable-length kernel; otherwise the row carries one block
id per token and the learner builds the block-diagonal causal mask on the model's device
(`spell.engine.learner.shared_prefix.device_mask`: block-sparse under flex_attention, boolean for SDPA).
Only the positions that predict response tokens reach the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def block_ids(seq_lengths: Sequence[int]) -> torch.Tensor:
    """Per token, the index of its sequence in the row."""
    return torch.repeat_interleave(torch.arange(len(seq_lengths)), torch.tensor(list(seq_lengths)))


def block_causal_mask(seq_lengths: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A [1, 1, T, T] additive mask: causal within each sequence, nothing across sequences (the reference
    for `device_mask`, and bench/gpu_check.py's dense baseline)."""
    seg = block_ids(seq_lengths)
    t = torch.arange(seg.numel())
    allowed = (seg[:, None] == seg[None, :]) & (t[:, None] >= t[None, :])
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)[None, None]


def packed_row(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], varlen: bool) -> dict[str, Any]:
    """Model inputs for one packed row, and where each response token's logit sits in it.

    `keep[j]` is the position whose logits predict target token `targets[j]`; `owner[j]` is the index of
    the sequence it belongs to (within this row) and `col[j]` its place in that response.
    """
    ids: list[int] = []
    pos: list[int] = []
    keep: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    col: list[int] = []
    lengths = []
    for k, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        start = len(ids)
        full = list(p) + list(r)
        ids += full
        pos += list(range(len(full)))
        lengths.append(len(full))
        for j in range(len(r)):
            keep.append(start + len(p) + j - 1)
            targets.append(r[j])
            owner.append(k)
            col.append(j)
    if any(len(p) == 0 for p in prompts):
        raise ValueError("a packed sequence needs at least one prompt token")
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "position_ids": torch.tensor([pos], dtype=torch.long),
        # every key is a "prompt" token of its block (answer id -1): the shared-prefix rule reduces to block-causal
        "attention_mask": None if varlen else (block_ids(lengths), torch.full((len(ids),), -1)),
        "keep": torch.tensor(keep, dtype=torch.long),
        "targets": torch.tensor(targets, dtype=torch.long),
        "owner": torch.tensor(owner, dtype=torch.long),
        "col": torch.tensor(col, dtype=torch.long),
        "tokens": len(ids),
    }
