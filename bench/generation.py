"""Rollout throughput: spell's transformers backend vs bare `model.generate` on the same prompts.

    python bench/generation.py [--prompts 32] [--new-tokens 64]

Prints generated tokens/s of both and their ratio (target >= 0.9), measured in the same run.
"""

from __future__ import annotations

import argparse
import random

import torch
from _common import machine, small_model, timed
from transformers import AutoModelForCausalLM, AutoTokenizer

from spell.engine.generation import SamplingParams, render_prompt
from spell.engine.hf_backend import TransformersGenerator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    path = small_model(args.hidden)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rng = random.Random(0)
    words = ["revenue", "bridge", "answer", "document", "question", "million", "growth", "year"]
    prompts = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 120))) for _ in range(args.prompts)]
    params = SamplingParams(temperature=0, max_new_tokens=args.new_tokens)

    gen = TransformersGenerator(model, tok)
    t_ours, out = timed(lambda: gen.generate(prompts, params), repeats=2)
    n_ours = sum(len(c.token_ids) for row in out for c in row)

    ids = [render_prompt(tok, p) for p in prompts]
    width = max(map(len, ids))
    batch = torch.full((len(ids), width), tok.pad_token_id)
    attn = torch.zeros_like(batch)
    for i, x in enumerate(ids):
        batch[i, width - len(x) :] = torch.tensor(x)
        attn[i, width - len(x) :] = 1

    def bare():
        with torch.inference_mode():
            return model.generate(
                input_ids=batch,
                attention_mask=attn,
                max_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )

    t_bare, res = timed(bare, repeats=2)
    n_bare = 0
    for row in res[:, width:].tolist():
        n_bare += next((i + 1 for i, t in enumerate(row) if t == tok.eos_token_id), len(row))

    ours, ref = n_ours / t_ours, n_bare / t_bare
    print(f"machine: {machine()}")
    print(
        f"model: random Qwen2, hidden {args.hidden}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
        f"params; {args.prompts} prompts, {args.new_tokens} new tokens, greedy"
    )
    print(f"spell TransformersGenerator: {n_ours} tokens in {t_ours:.2f}s = {ours:.0f} tok/s")
    print(f"bare model.generate:         {n_bare} tokens in {t_bare:.2f}s = {ref:.0f} tok/s")
    print(f"ratio (spell / bare): {ours / ref:.3f}   (target >= 0.9)")


if __name__ == "__main__":
    main()
