"""One engine's rollout of a prompt batch, shared by the policy actor and its weightless vLLM replicas."""

from __future__ import annotations

from typing import Any

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
