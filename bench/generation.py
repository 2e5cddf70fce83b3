"""Rollout speed on the default preset's model (SmolLM2-135M, fp32) at the default preset's two shapes, all in
one run: spell's transformers backend as it is (the written-out decode step, `engine.decode_step=direct`), as
it was before issue 26 (the model's forward over the concatenating KV cache, the full-vocabulary top-p sort and
draw), with `engine.decode_step=model` (the model's forward over the in-place cache), with
`engine.prefill_dtype=bfloat16` (a bf16 copy prefills, other tokens), with that and
`engine.decode_dtype=bfloat16` (decode steps' Linear matmuls in bf16, other tokens), and bare
`model.generate`; plus the decode step against three floors measured here and now (a pass over every weight;
over every weight and the KV cache a step reads; the step's FLOPs at the fp32 GEMM rate), and prefill against
the GEMM rate.

    python bench/generation.py            # SmolLM2-135M, the question and respond rounds (~6 min on 2 cores)
    python bench/generation.py --toy      # a random 2.6M Qwen2, seconds

Shapes: question round, 12 prompts x ~640 tokens, n=1, up to 96 new tokens, T=1, top-p 0.95 (the paper's);
respond round, 6 prompts x ~1.3K tokens, n=4, up to 24 new, T=1, top-p 0.95. Prompts are real English (the
built-in Wikipedia corpus), new for every timed run, so no cache helps. If vLLM is importable its line is
printed beside them (spell's vLLM backend, the same prompts).
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import (
    bench_model,
    describe,
    forward_flops_per_token,
    gemm_rate,
    kv_pass_seconds,
    machine,
    timed,
    weight_pass_seconds,
    word_prompts,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from spell.engine.padding import left_padded
from spell.engine.rollout import hf_backend
from spell.engine.rollout.hf_backend import TransformersGenerator
from spell.engine.rollout.interface import SamplingParams

SHAPES = {  # name: (prompts, prompt tokens, n, max new tokens)
    "question": (12, 640, 1, 96),
    "respond": (6, 1300, 4, 24),
}


def prefill_rate(model, prompts: list[list[int]]) -> float:
    """Prompt tokens/s of one batched forward (left-padded, last logits only), as the generator prefills."""
    ids, attn, pos = left_padded(prompts)

    def run():
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)

    t, _ = timed(run, repeats=1)
    return sum(map(len, prompts)) / t


def spell_round(
    model,
    tok,
    prompts: list[str],
    params: SamplingParams,
    before: bool,
    bf16: bool = False,
    bf16_decode: bool = False,
    step: str = "direct",
) -> tuple[float, int, TransformersGenerator]:
    """(seconds, new tokens, the generator with its prefill and decode counters) of one round through spell's
    backend; `before`: the model's forward over the concatenating cache and the full top-p sort and draw, as the
    backend was; `bf16`: engine.prefill_dtype=bfloat16 (its cast is in the time); `bf16_decode`:
    engine.decode_dtype=bfloat16 too; `step`: engine.decode_step (the direct step's weight packing is in the time)."""
    saved, fast = hf_backend.NUCLEUS_CANDIDATES, hf_backend.FAST_NUCLEUS
    hf_backend.NUCLEUS_CANDIDATES = 1 << 30 if before else saved
    hf_backend.FAST_NUCLEUS = not before
    try:
        dtype = torch.bfloat16 if bf16 else None
        gen = TransformersGenerator(model, tok, token_budget=24576, preallocate=not before, prefill_dtype=dtype,
                                    decode_dtype=torch.bfloat16 if bf16_decode else None,
                                    decode_step="model" if before else step)  # fmt: skip
        t = time.perf_counter()
        out = gen.generate(prompts, params)
        wall = time.perf_counter() - t
    finally:
        hf_backend.NUCLEUS_CANDIDATES, hf_backend.FAST_NUCLEUS = saved, fast
    return wall, sum(len(c.token_ids) for row in out for c in row), gen


def bare_round(model, tok, prompts: list[list[int]], params: SamplingParams, eos: set[int]) -> tuple[float, int]:
    """The same round through `model.generate` (left-padded batch, n copies of each prompt, one seed)."""
    batch, attn, _ = left_padded([p for p in prompts for _ in range(params.n)], tok.pad_token_id or 0)
    width = batch.shape[1]
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.inference_mode():
        res = model.generate(input_ids=batch, attention_mask=attn, max_new_tokens=params.max_new_tokens,
                             do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0,
                             pad_token_id=tok.pad_token_id, eos_token_id=sorted(eos))  # fmt: skip
    wall = time.perf_counter() - t
    new = sum(next((i + 1 for i, x in enumerate(r) if x in eos), len(r)) for r in res[:, width:].tolist())
    return wall, new


def vllm_round(path: str, prompts: list[str], params: SamplingParams) -> str:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vLLM not importable here: no vLLM line"
    from spell.engine.rollout.vllm_backend import VLLMGenerator

    tok = AutoTokenizer.from_pretrained(path)
    gen = VLLMGenerator(None, tok, max_context=4096, dtype=torch.float32, base_path=path, batch_token_budget=24576)
    gen.generate(prompts[:1], params)  # warm-up
    t = time.perf_counter()
    out = gen.generate(prompts, params)
    wall = time.perf_counter() - t
    new = sum(len(c.token_ids) for row in out for c in row)
    return f"vLLM {wall:.1f} s ({new / wall:.1f} new tok/s)"


def decode_step_seconds(gen: TransformersGenerator, texts: list[str]) -> float:
    """Mean decode step (sampling included) of 33 steps over `texts`, after a warm-up call."""
    gen.generate(texts[:1], SamplingParams(n=1, temperature=1.0, top_p=0.95, max_new_tokens=2, seed=0))
    gen.decode_seconds, gen.decode_steps = 0.0, 0
    gen.generate(texts, SamplingParams(n=1, temperature=1.0, top_p=0.95, max_new_tokens=34, seed=0))
    return gen.decode_seconds / max(gen.decode_steps, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="random 2.6M Qwen2 instead of SmolLM2-135M")
    args = ap.parse_args()
    path = bench_model(args.toy)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(f"model: {describe(model)}")
    configured = model.generation_config.eos_token_id
    eos = {tok.eos_token_id} | set(configured if isinstance(configured, list) else [configured] if configured else [])
    seed = 0
    for name, (count, length, n, new) in SHAPES.items():
        params = SamplingParams(n=n, temperature=1.0, top_p=0.95, max_new_tokens=new, seed=0)
        runs = {}
        for arm in ("warm-up", "before", "model step", "now", "bf16 prefill", "bf16 prefill+decode", "bare"):
            seed += 1  # new prompts for every run: no prefix or cache hit anywhere
            ids = word_prompts(tok, count, length, seed=seed)
            texts = [tok.decode(x) for x in ids]
            if arm == "bare":
                runs[arm] = bare_round(model, tok, ids, params, eos)
            elif arm != "warm-up":
                runs[arm] = spell_round(model, tok, texts, params, before=arm == "before", bf16=arm.startswith("bf16"),
                                        bf16_decode=arm == "bf16 prefill+decode",
                                        step="model" if arm == "model step" else "direct")  # fmt: skip
            else:
                spell_round(model, tok, texts[:2], params, before=False)
                spell_round(model, tok, texts[:2], params, before=False, bf16=True, bf16_decode=True)
        line = ", ".join(f"{k} {r[0]:.1f} s ({r[1] / r[0]:.1f} new tok/s)" for k, r in runs.items())
        print(f"{name} round ({count} x ~{length} tokens, n={n}, up to {new} new): {line}")
        # the arms sample different tokens (new prompts, other draws), so compare the two parts of a round
        parts = {}
        for k in ("before", "model step", "now", "bf16 prefill", "bf16 prefill+decode"):
            g = runs[k][2]
            parts[k] = (g.prefill_tokens / g.prefill_seconds, g.decode_seconds / max(g.decode_steps, 1))
            print(f"  {k}: prefill {g.prefill_seconds:.1f} s ({parts[k][0]:.0f} tok/s), decode {g.decode_seconds:.1f} s"
                  f" over {g.decode_steps} steps ({parts[k][1] * 1e3:.0f} ms a step, sampling included)")  # fmt: skip
        ref = runs["before"][2]
        for k in ("model step", "now", "bf16 prefill", "bf16 prefill+decode"):
            pre, dec = parts[k][0] / parts["before"][0], parts["before"][1] / parts[k][1]
            both = (ref.prefill_seconds + ref.decode_seconds) / (
                ref.prefill_tokens / parts[k][0] + ref.decode_steps * parts[k][1]
            )
            print(f"  {k} against before: prefill {pre:.2f}x, decode step {dec:.2f}x; before's round at these rates "
                  f"{both:.2f}x   (target >= 2x)")  # fmt: skip
        print(f"  {vllm_round(path, texts, params)}")
    # the decode step against three floors measured now: one pass over every weight; over every weight and the
    # KV cache a step reads; the step's FLOPs at the fp32 GEMM rate (at 12 rows an fp32 step is compute-bound)
    ids = word_prompts(tok, 12, 640, seed=seed + 1)
    texts = [tok.decode(x) for x in ids]
    context = max(map(len, ids)) + 17  # the cache the middle one of 33 steps reads
    floor, kv = weight_pass_seconds(model), kv_pass_seconds(model, 12, context)
    limit = gemm_rate(model)
    compute = 12 * forward_flops_per_token(model, context, head=True) / limit
    print(f"decode step floors, 12 rows at ~{context} tokens: weight pass {floor * 1e3:.0f} ms, weights + KV cache "
          f"{(floor + kv) * 1e3:.0f} ms, fp32 FLOPs at the GEMM rate ({limit / 1e9:.0f} GFLOP/s) "
          f"{compute * 1e3:.0f} ms")  # fmt: skip
    arms = {
        "engine.decode_step=direct (default)": {},
        "engine.decode_step=model": {"decode_step": "model"},
        "direct, engine.decode_dtype=bfloat16": {"decode_dtype": torch.bfloat16},
        "model, engine.decode_dtype=bfloat16": {"decode_step": "model", "decode_dtype": torch.bfloat16},
    }
    steps = {
        k: decode_step_seconds(TransformersGenerator(model, tok, token_budget=24576, **kw), texts)
        for k, kw in arms.items()
    }
    for k, t in steps.items():
        print(f"decode step, {k} (sampling included): {t * 1e3:.0f} ms = {t / floor:.1f}x the weight pass "
              f"(target <= 2x), {t / (floor + kv):.1f}x weights + KV, {t / compute:.1f}x the FLOP floor; "
              f"{steps['engine.decode_step=model'] / t:.2f}x the model's forward")  # fmt: skip
    rate = prefill_rate(model, ids)
    allowed = limit / forward_flops_per_token(model, 320, head=False)
    print(f"prefill: {rate:.0f} tok/s = {100 * rate / allowed:.0f}% of the fp32 GEMM rate on the model's layer "
          f"shapes ({limit / 1e9:.1f} GFLOP/s)")  # fmt: skip
    cast = TransformersGenerator(model, tok, prefill_dtype=torch.bfloat16).prefill_copy
    assert cast is not None
    bf16_rate = prefill_rate(cast.fresh().eval(), ids)
    print(f"prefill, bf16 copy: {bf16_rate:.0f} tok/s = {bf16_rate / rate:.2f}x fp32's")


if __name__ == "__main__":
    main()
