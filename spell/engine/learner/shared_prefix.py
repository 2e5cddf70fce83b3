"""Shared-prefix rows for the learner: the G answers of one prompt computed over one copy of the prompt.

A responder group is G sequences with identical prompt ids (the paper: 16K-token prompts, G=8), and the
verifier's votes share theirs too. Laid out separately, every forward and backward computes the prompt G
times. Here a group becomes one row `[prompt, r1, ..., rG]`: prompt tokens attend causally among
themselves, each answer attends to the whole prompt and causally to itself only, and each answer's position
ids continue from the prompt, so every answer token sees exactly what it saw when sampled. Several groups
may share a row (packing), each its own block. Loss and gradients equal the separate layout (tested).

The row carries the rule's inputs (block and answer ids per token), not a mask: the learner builds the mask
on the model's device (`device_mask`): a block-sparse `BlockMask` under `flex_attention`, a boolean
[1, 1, T, T] mask for SDPA (a quarter of a float mask's bytes), an additive one for eager attention. A
dense mask computes every tile of the row, so a single-process learner runs the row's blocks apart
(`row_blocks`): on the default GRPO batch attention was 58% of the step as one 3132-token row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def prefix_units(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], budget: int) -> list[list[int]]:
    """Sequence indices grouped by identical prompt (first-appearance order), each group split into chunks
    whose unique tokens (prompt once + its answers) fit `budget` (a chunk repeats the prompt)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(tuple(p), []).append(i)
    units: list[list[int]] = []
    for key, members in groups.items():
        chunk: list[int] = []
        cost = len(key)
        for i in members:
            n = len(responses[i])
            if chunk and cost + n > budget:
                units.append(chunk)
                chunk, cost = [], len(key)
            chunk.append(i)
            cost += n
        units.append(chunk)
    return units


def unit_tokens(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], unit: Sequence[int]) -> int:
    """Tokens a unit costs in a shared row: its prompt once plus every answer."""
    return len(prompts[unit[0]]) + sum(len(responses[i]) for i in unit)


def segments(units: Sequence[Sequence[int]], prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]):
    """Per token of the row: its block (unit), its answer (-1 for prompt tokens), its position id."""
    block: list[int] = []
    answer: list[int] = []
    pos: list[int] = []
    ids: list[int] = []
    for b, unit in enumerate(units):
        p = list(prompts[unit[0]])
        ids += p
        block += [b] * len(p)
        answer += [-1] * len(p)
        pos += list(range(len(p)))
        for i in unit:
            r = list(responses[i])
            ids += r
            block += [b] * len(r)
            answer += [i] * len(r)
            pos += list(range(len(p), len(p) + len(r)))
    return ids, block, answer, pos


def allowed(block: torch.Tensor, answer: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """The attention rule, shared by the dense mask and flex_attention's mask_mod: same block, causal, and a
    key that is a prompt token or a token of the query's own answer."""
    return (block[q] == block[kv]) & (kv <= q) & ((answer[kv] == -1) | (answer[kv] == answer[q]))


def device_mask(block: torch.Tensor, answer: torch.Tensor, impl: str, device: torch.device, dtype: torch.dtype) -> Any:
    """The row's mask for attention implementation `impl`, built where the model runs (never on the CPU
    and copied per micro-batch); `dtype` is the additive mask's for eager attention."""
    if impl == "flex_attention":
        return flex_block_mask(block, answer, device)
    block, answer = block.to(device), answer.to(device)
    t = torch.arange(block.numel(), device=device)
    ok = allowed(block, answer, t[:, None], t[None, :])[None, None]
    if impl == "sdpa":
        return ok
    return torch.where(ok, 0.0, torch.finfo(dtype).min).to(dtype)


def flex_block_mask(block: torch.Tensor, answer: torch.Tensor, device: torch.device) -> Any:
    """The same rule as a flex_attention BlockMask: only the (query, key) tiles with an allowed pair are computed."""
    from torch.nn.attention.flex_attention import create_block_mask

    block, answer = block.to(device), answer.to(device)

    def mask_mod(b: Any, h: Any, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return allowed(block, answer, q, kv)

    n = block.numel()
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=n, KV_LEN=n, device=device)


def shared_row(
    units: Sequence[Sequence[int]],
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    order: Sequence[int],
) -> dict[str, Any]:
    """Model inputs for one shared-prefix row and where each answer token's logit sits.

    `order` lists the sequences of the row as the loss targets do (owner j = order.index(sequence)); the
    first answer token of every answer in a block is predicted from the same last prompt position, so
    `keep` may repeat a position. `mask`: 'dense' (SDPA), 'flex' (a BlockMask) or 'none' (caller's)."""
    if any(len(prompts[u[0]]) == 0 for u in units):
        raise ValueError("a shared-prefix row needs at least one prompt token per block")
    ids, block, answer, pos = segments(units, prompts, responses)
    owner_of = {s: j for j, s in enumerate(order)}
    keep: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    col: list[int] = []
    start = 0
    for unit in units:
        p_len = len(prompts[unit[0]])
        last_prompt = start + p_len - 1
        offset = start + p_len
        for i in unit:
            r = responses[i]
            for j in range(len(r)):
                keep.append(last_prompt if j == 0 else offset + j - 1)
                targets.append(int(r[j]))
                owner.append(owner_of[i])
                col.append(j)
            offset += len(r)
        start = offset
    b, a = torch.tensor(block), torch.tensor(answer)
    attention = (b, a)  # the mask's inputs: the learner builds it on the model's device (device_mask)
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "position_ids": torch.tensor([pos], dtype=torch.long),
        "attention_mask": attention,
        "keep": torch.tensor(keep, dtype=torch.long),
        "targets": torch.tensor(targets, dtype=torch.long),
        "owner": torch.tensor(owner, dtype=torch.long),
        "col": torch.tensor(col, dtype=torch.long),
        "tokens": len(ids),
    }


def row_blocks(row: dict[str, Any]) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """A shared or packed row cut into its blocks, each `(indices of the row's kept positions it holds, its
    own row)`. A block attends only within itself, so computing blocks apart is the same arithmetic without
    a dense mask's cross-block tiles (the whole row's length squared); a block of one sequence needs no mask
    at all (plain causal attention). Blocks that predict nothing are left out."""
    block, answer = row["attention_mask"]
    keep = row["keep"]
    cuts = (torch.nonzero(block[1:] != block[:-1]).flatten() + 1).tolist()
    parts = []
    for s, e in zip([0, *cuts], [*cuts, block.numel()], strict=True):
        sel = torch.nonzero((keep >= s) & (keep < e)).flatten()
        if not sel.numel():
            continue
        a = answer[s:e]
        parts.append((sel, {
            "input_ids": row["input_ids"][:, s:e],
            "position_ids": row["position_ids"][:, s:e],
            "attention_mask": None if bool((a == -1).all()) else (block[s:e], a),
            "keep": keep[sel] - s,
            "targets": row["targets"][sel],
        }))  # fmt: skip
    return parts
