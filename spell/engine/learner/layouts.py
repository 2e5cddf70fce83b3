"""How a micro-batch of trajectories is laid out for the model: padded rows, packed rows, or shared-prefix
rows (the G answers of a prompt over one copy of it). Whatever the model sees, the loss sees the same
targets: response masks, old log-probs and advantages, right-aligned to the longest response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from spell.engine.batching import min_padding_batches, pack_first_fit
from spell.engine.learner.packing import packed_row
from spell.engine.learner.shared_prefix import prefix_units, shared_row, unit_tokens
from spell.engine.padding import left_padded

PADDED, PACKED, SHARED = "padded", "packed", "shared"


class Trajectory(Protocol):
    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float
    old_logprobs: list[float] | None


def micro_batches(seqs: Sequence[Trajectory], layout: str, budget: int) -> list[list[int]]:
    """Sequence indices per micro-batch. Padded: length-sorted runs whose rows x longest fit `budget`;
    packed: first-fit rows of `budget` tokens; shared: prompt groups (their unique tokens) packed likewise,
    each micro-batch listing its groups' members together."""
    if layout == SHARED:
        prompts, responses = [s.prompt_ids for s in seqs], [s.response_ids for s in seqs]
        units = prefix_units(prompts, responses, budget)
        rows = pack_first_fit([unit_tokens(prompts, responses, u) for u in units], budget)
        return [[i for u in row for i in units[u]] for row in rows]
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in seqs]
    if layout == PACKED:
        return pack_first_fit(lengths, budget)
    return min_padding_batches(lengths, budget)


def targets(seqs: Sequence[Trajectory]) -> dict[str, torch.Tensor]:
    """Response masks, old log-probs and advantages, right-aligned to the longest response."""
    resp = max(len(s.response_ids) for s in seqs)
    target_mask = torch.zeros((len(seqs), resp), dtype=torch.float32)
    old = torch.zeros((len(seqs), resp), dtype=torch.float32)
    has_old = torch.zeros(len(seqs), dtype=torch.bool)
    for row, s in enumerate(seqs):
        n = len(s.response_ids)
        if n:
            target_mask[row, resp - n :] = 1.0
        if s.old_logprobs is not None:
            if len(s.old_logprobs) != n:
                raise ValueError(f"old_logprobs has {len(s.old_logprobs)} values for {n} response tokens")
            old[row, resp - n :] = torch.tensor(s.old_logprobs, dtype=torch.float32)
            has_old[row] = True
    adv = torch.tensor([s.advantage for s in seqs], dtype=torch.float32)
    return {"target_mask": target_mask, "old": old, "has_old": has_old, "adv": adv, "resp": torch.tensor(resp)}


def padded_batch(seqs: Sequence[Trajectory], pad_id: int) -> dict[str, Any]:
    """Left-padded ids, attention mask, position ids: every response at the right edge, so logits are only
    needed for the last `longest response + 1` positions."""
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in seqs]
    ids, attn, positions = left_padded([s.prompt_ids + s.response_ids for s in seqs], pad_id)
    return {"ids": ids, "attn": attn, "positions": positions, "tokens": ids.numel(), "real": sum(lengths),
            "sequence_tokens": sum(lengths), **targets(seqs)}  # fmt: skip


def row_batch(seqs: Sequence[Trajectory], layout: str, varlen: bool) -> dict[str, Any]:
    """One row without padding: packed (each sequence its own block) or shared (each prompt once)."""
    prompts, responses = [s.prompt_ids for s in seqs], [s.response_ids for s in seqs]
    if layout == SHARED:
        units = prefix_units(prompts, responses, budget=1 << 62)
        row = shared_row(units, prompts, responses, range(len(seqs)))
    else:
        row = packed_row(prompts, responses, varlen)
    full = sum(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    return {"packed": row, "tokens": row["tokens"], "real": row["tokens"], "sequence_tokens": full, **targets(seqs)}
