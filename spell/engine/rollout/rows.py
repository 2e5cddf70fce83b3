"""One engine's rollout of a prompt batch, shared by the policy actor and its weightless vLLM replicas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from spell.engine.rollout.interface import FINISH_TOO_LONG, Prompt, SamplingParams, render_prompt


def rollout_rows(
    generator: Any,
    tokenizer: Any,
    prompts: list[Prompt],
    sp: SamplingParams,
    max_prompt_tokens: int | None = None,
    prefills: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Per prompt: its token ids and its completions. Prompts longer than `max_prompt_tokens` are not
    generated: they come back with `prompt_too_long` completions, so callers can count them. A prefill is
    appended to the rendered prompt and put back in front of each completion's text."""
    ids = [render_prompt(tokenizer, p) for p in prompts]
    if prefills:
        ids = [
            x + list(tokenizer(pf, add_special_tokens=False)["input_ids"]) if pf else x
            for x, pf in zip(ids, prefills, strict=True)
        ]
    keep = [i for i, x in enumerate(ids) if max_prompt_tokens is None or len(x) <= max_prompt_tokens]
    results: list[dict[str, Any]] = [
        {
            "prompt_ids": x,
            "completions": [
                {
                    "prompt_index": i,
                    "sample_index": j,
                    "text": "",
                    "token_ids": [],
                    "finish_reason": FINISH_TOO_LONG,
                    "prompt_tokens": len(x),
                }
                for j in range(sp.n)
            ],
        }
        for i, x in enumerate(ids)
    ]
    if keep:
        # a rule-played role reads the prompt text (a tiny tokenizer may not round-trip it)
        text_in = getattr(generator, "reads_text", False) and not prefills
        rows = generator.generate([prompts[i] if text_in else ids[i] for i in keep], sp)
        for i, row in zip(keep, rows, strict=True):
            pf = prefills[i] if prefills else ""
            results[i]["completions"] = [{**c.to_dict(), "prompt_index": i, "text": pf + c.text} for c in row]
    return results


def left_padded(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, positions) of token rows padded on the left to the longest, as a batched
    prefill takes them: every row's last token in the last column, positions counting its own tokens only."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], attn[i, width - len(row) :] = torch.tensor(row, dtype=torch.long), 1
    return ids, attn, (attn.cumsum(-1) - 1).clamp(min=0)
