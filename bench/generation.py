"""Rollout throughput on the default preset's model and shapes: one prefill per prompt vs one per sample.

    python bench/generation.py            # SmolLM2-135M (the default preset's model), respond-round shapes
    python bench/generation.py --toy      # a random 2.6M Qwen2, seconds

Prints, measured in one run: the machine's fp32 GEMM rate on the model's layer shapes; prefill tokens/s and
its share of what that rate allows; a respond round (G samples per prompt) and a verify round (votes) with
each sample prefilling its own copy (the layout before) and with one prefill per prompt: prompt tokens
computed per unique prompt token, wall time, speed-up; and spell's decode loop against bare
`model.generate` (greedy, one sample: the reference for its Python overhead, target >= 0.9).
"""

from __future__ import annotations

import argparse

import torch
from _common import bench_model, describe, forward_flops_per_token, gemm_rate, machine, timed, word_prompts
from transformers import AutoModelForCausalLM, AutoTokenizer

from spell.engine.rollout.hf_backend import TransformersGenerator
from spell.engine.rollout.interface import SamplingParams


def prefill_rate(model, prompts: list[list[int]]) -> float:
    """Prompt tokens/s of one batched forward (left-padded, last logits only), as the generator prefills."""
    width = max(map(len, prompts))
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :], attn[i, width - len(p) :] = torch.tensor(p), 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)

    def run():
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)

    t, _ = timed(run, repeats=1)
    return sum(map(len, prompts)) / t


def round_figures(model, tok, prompts, params: SamplingParams) -> dict[str, float]:
    """Wall time and prompt tokens computed of one round, per-sample copies vs one prefill per prompt."""
    out = {}
    texts = {}
    for share in (False, True):
        gen = TransformersGenerator(model, tok, token_budget=24576, share_prefill=share)
        t, res = timed(lambda g=gen: g.generate(prompts, params), repeats=1)
        out[f"t{int(share)}"] = t
        out[f"computed{int(share)}"] = gen.prefill_tokens / 2  # warm-up + one timed run
        texts[share] = [[c.token_ids for c in row] for row in res]
    out["same"] = float(texts[False] == texts[True])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="random 2.6M Qwen2 instead of SmolLM2-135M")
    ap.add_argument("--prompts", type=int, default=6, help="questions per respond round (default preset: ~6)")
    ap.add_argument("--prompt-tokens", type=int, default=650, help="responder prompt length (default preset: ~650)")
    ap.add_argument("--group", type=int, default=4, help="responder.group_size G")
    ap.add_argument("--new-tokens", type=int, default=24, help="rollout.role_max_new_tokens.responder")
    ap.add_argument("--votes", type=int, default=3, help="verifier.votes")
    args = ap.parse_args()
    path = bench_model(args.toy)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = word_prompts(tok, args.prompts, args.prompt_tokens)
    unique = sum(map(len, prompts))
    mean_len = unique / len(prompts)

    limit = gemm_rate(model)
    rate = prefill_rate(model, prompts)
    allowed = limit / forward_flops_per_token(model, mean_len / 2, head=False)
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(f"model: {describe(model)}; {len(prompts)} prompts of ~{mean_len:.0f} tokens ({unique} unique)")
    print(
        f"fp32 GEMM rate on the model's layer shapes: {limit / 1e9:.1f} GFLOP/s -> {allowed:.0f} prefill tok/s allowed"
    )
    print(f"prefill: {rate:.0f} tok/s = {100 * rate / allowed:.0f}% of the GEMM limit   (target >= 50%)")

    rounds = (
        ("respond", SamplingParams(n=args.group, temperature=1.0, max_new_tokens=args.new_tokens, seed=0)),
        ("verify", SamplingParams(n=args.votes, temperature=1.0, max_new_tokens=6, seed=0)),
    )
    for name, params in rounds:
        f = round_figures(model, tok, prompts, params)
        print(
            f"{name} round (n={params.n}, {params.max_new_tokens} new tokens): per-sample copies {f['t0']:.1f}s, "
            f"{f['computed0'] / unique:.1f}x unique prompt tokens computed; one prefill per prompt {f['t1']:.1f}s, "
            f"{f['computed1'] / unique:.1f}x; speed-up {f['t0'] / f['t1']:.2f}x; same tokens: {bool(f['same'])}"
        )

    greedy = SamplingParams(temperature=0, max_new_tokens=args.new_tokens)
    gen = TransformersGenerator(model, tok, token_budget=24576)
    t_ours, out = timed(lambda: gen.generate(prompts, greedy), repeats=1)
    n_ours = sum(len(c.token_ids) for row in out for c in row)
    width = max(map(len, prompts))
    batch = torch.full((len(prompts), width), tok.pad_token_id)
    attn = torch.zeros_like(batch)
    for i, x in enumerate(prompts):
        batch[i, width - len(x) :], attn[i, width - len(x) :] = torch.tensor(x), 1

    def bare():
        with torch.inference_mode():
            return model.generate(
                input_ids=batch,
                attention_mask=attn,
                max_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=sorted(gen.eos_ids),
            )

    t_bare, res = timed(bare, repeats=1)
    n_bare = sum(next((i + 1 for i, t in enumerate(r) if t in gen.eos_ids), len(r)) for r in res[:, width:].tolist())
    print(
        f"greedy, one sample: spell {n_ours / t_ours:.1f} tok/s vs bare model.generate {n_bare / t_bare:.1f} tok/s "
        f"(prompt + decode wall: {t_ours:.1f}s vs {t_bare:.1f}s); ratio {t_bare / t_ours:.3f}   (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
