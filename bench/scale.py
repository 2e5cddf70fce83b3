"""GPU throughput: vLLM rollouts (spell's backend vs the bare vLLM engine vs spell's transformers backend),
learner tokens/s and MFU (padded vs packed), peak memory. Random weights in a real model shape.

    python bench/scale.py                       # Qwen2.5-1.5B shape, bf16, one GPU
    python bench/scale.py --shape 7b --prompts 64 --new-tokens 256

Every ratio compares two numbers measured in this run on this machine. Needs a CUDA GPU; without vLLM
the vLLM rows are skipped. The learner runs first and is freed before vLLM starts; MFU counts 6 x the
non-embedding parameters per token (embedding lookups are not FLOPs).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import random
import tempfile
import time

import torch
from _common import machine

SHAPES = {  # hidden, layers, heads, kv heads, intermediate (Qwen2.5 configs)
    "0.5b": (896, 24, 14, 2, 4864),
    "1.5b": (1536, 28, 12, 2, 8960),
    "7b": (3584, 28, 28, 4, 18944),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def peak_tflops() -> float | None:
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def build(shape: str) -> str:
    from spell.engine.models.tiny import build_tiny_model

    h, layers, heads, kv, inter = SHAPES[shape]
    path = os.path.join(tempfile.gettempdir(), f"spell-bench-{shape}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        build_tiny_model(path, hidden_size=h, layers=layers, heads=heads, kv_heads=kv, intermediate_size=inter,
                         vocab_size=151936, max_positions=32768)  # fmt: skip
    return path


def rollout_vllm(model, tok, prompts, sp, args, gen_tokens) -> float:
    """spell's vLLM backend vs the bare engine; the engine is shut down before returning."""
    from spell.engine.rollout.vllm_backend import VLLMGenerator

    spell_vllm = VLLMGenerator(model, tok, max_context=args.prompt_tokens + args.new_tokens + 8,
                               gpu_memory_utilization=0.4, sleep_mode=True)  # fmt: skip
    orig = spell_vllm._vllm.SamplingParams
    spell_vllm._vllm.SamplingParams = lambda **kw: orig(**kw, ignore_eos=True)
    spell_vllm.generate(prompts[:4], sp)
    t = time.perf_counter()
    spell_vllm.generate(prompts, sp)
    spell_s = time.perf_counter() - t
    bare = spell_vllm.llm
    bare_sp = orig(n=1, temperature=1.0, top_p=1.0, max_tokens=args.new_tokens, seed=0, ignore_eos=True)
    t = time.perf_counter()
    bare.generate([{"prompt_token_ids": p} for p in prompts], bare_sp, use_tqdm=False)
    bare_s = time.perf_counter() - t
    print(f"rollout vLLM  spell {gen_tokens / spell_s:9.0f} tok/s  bare vLLM {gen_tokens / bare_s:9.0f} tok/s  "
          f"ratio {bare_s / spell_s:.2f}")  # fmt: skip
    t = time.perf_counter()
    spell_vllm.sleep()
    spell_vllm.wake_up()
    spell_vllm.sync_weights(model)
    print(f"sleep + wake + full weight sync: {time.perf_counter() - t:.2f} s")
    del spell_vllm, bare
    gc.collect()
    torch.cuda.empty_cache()
    return spell_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="1.5b", choices=sorted(SHAPES))
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=1024)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--train-seqs", type=int, default=32)
    ap.add_argument("--train-tokens", type=int, default=2048, help="tokens per training sequence")
    ap.add_argument("--skip-hf", action="store_true", help="skip the (slow) transformers rollout baseline")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/scale.py needs a CUDA GPU")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
    from spell.engine.rollout.hf_backend import TransformersGenerator
    from spell.engine.rollout.interface import SamplingParams

    print(f"machine: {machine()}; shape {args.shape}; bf16")
    path = build(args.shape)
    tok = AutoTokenizer.from_pretrained(path)
    rng = random.Random(0)
    vocab = len(tok) - 8
    prompts = [[rng.randrange(8, vocab) for _ in range(args.prompt_tokens)] for _ in range(args.prompts)]
    sp = SamplingParams(n=1, temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens, seed=0)
    gen_tokens = args.prompts * args.new_tokens

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    dense = n_params - model.get_input_embeddings().weight.numel()  # MFU: embedding lookups are not FLOPs

    # 1. learner first, then freed: vLLM is never in memory beside it (at 7B the two do not fit together)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    lens = [rng.randint(args.train_tokens // 4, args.train_tokens) for _ in range(args.train_seqs)]
    seqs = [
        TrainSequence(
            [rng.randrange(8, vocab) for _ in range(n - n // 4)],
            [rng.randrange(8, vocab) for _ in range(n // 4)],
            rng.uniform(-1, 1),
        )
        for n in lens
    ]
    tokens = sum(lens)
    peak = peak_tflops()
    for packing in (False, True):
        learner = Learner(
            model, LearnerSettings(token_budget=4 * args.train_tokens, packing=packing, shared_prefix=False)
        )
        learner.train_step(seqs[:4])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        m = learner.train_step(seqs)
        torch.cuda.synchronize()
        s = time.perf_counter() - t
        mfu = 6 * dense * tokens / s / (peak * 1e12) if peak else float("nan")  # +recompute not counted
        print(f"learner {'packed' if packing else 'padded'}: {tokens / s:8.0f} tok/s  MFU {100 * mfu:5.1f}%  "
              f"padding {100 * m['padding_fraction']:.1f}%  peak memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")  # fmt: skip
        del learner
    gc.collect()
    torch.cuda.empty_cache()
    model.gradient_checkpointing_disable()
    model.config.use_cache = True

    # 2. rollouts: spell's vLLM backend vs the bare engine on the same prompts (ignore_eos: same token counts)
    spell_s = None
    if importlib.util.find_spec("vllm") is None:
        print("vLLM is not installed: the vLLM rollout rows are skipped (pip install 'spell[gpu]')")
    else:
        spell_s = rollout_vllm(model, tok, prompts, sp, args, gen_tokens)

    if not args.skip_hf:
        hf = TransformersGenerator(model, tok, token_budget=65536)
        few = prompts[: max(4, args.prompts // 4)]
        t = time.perf_counter()
        out = hf.generate(few, sp)
        hf_s = time.perf_counter() - t
        hf_tok = sum(len(c.token_ids) for row in out for c in row)
        ratio = f"; vLLM/transformers {(gen_tokens / spell_s) / (hf_tok / hf_s):.1f}x" if spell_s else ""
        print(f"rollout transformers backend {hf_tok / hf_s:9.0f} tok/s{ratio}")


if __name__ == "__main__":
    main()
