"""Does a low-precision policy still learn? Share of weight elements moved by N GRPO steps, bf16 vs fp32.

    python bench/precision.py [--steps 80] [--lr 2e-6]

With bf16 weights updated in place, an lr-2e-6 AdamW step rounds to zero for most elements (bf16 has
8 bits of mantissa: an element of size 0.02 moves only by updates above ~1e-4), so a bf16 policy silently
stops learning. spell keeps fp32 master weights and optimizer state and computes in bf16 under autocast
(spec Part A 'loss'); this prints the moved share after 1 and after `--steps` identical steps for both.
"""

from __future__ import annotations

import argparse
import random
import tempfile

import torch
from _common import machine

from spell.engine.models.tiny import build_tiny_model
from spell.engine.policy import Policy, PolicySpec


def moved_share(dtype: str, model_dir: str, steps: int, lr: float) -> list[float]:
    """Share of elements that differ from the initial weights after each of `steps` steps."""
    from spell.engine.learner.core import LearnerSettings

    policy = Policy(PolicySpec(model_dir, dtype=dtype, device="cpu", learner=LearnerSettings(lr=lr)))
    start = {n: p.detach().float().clone() for n, p in policy.model.named_parameters()}
    total = sum(p.numel() for p in start.values())
    rng = random.Random(0)
    vocab = policy.model.config.vocab_size
    seqs = [
        {
            "prompt_ids": [rng.randrange(3, vocab) for _ in range(24)],
            "response_ids": [rng.randrange(3, vocab) for _ in range(8)],
            "advantage": a,
        }
        for a in (1.0, -1.0, 0.5, -0.5)
    ]
    shares = []
    for _ in range(steps):
        policy.train_step(seqs)
        moved = sum(int((p.detach().float() != start[n]).sum()) for n, p in policy.model.named_parameters())
        shares.append(moved / total)
    return shares


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--lr", type=float, default=2e-6)
    args = ap.parse_args()
    torch.manual_seed(0)
    model_dir = str(build_tiny_model(tempfile.mkdtemp(prefix="spell-precision-") + "/m"))
    print(f"machine: {machine()}; tiny Qwen2 (hidden 64, 2 layers), lr {args.lr}, {args.steps} identical steps")
    fp32 = moved_share("float32", model_dir, args.steps, args.lr)
    bf16 = moved_share("bfloat16", model_dir, args.steps, args.lr)
    print(f"{'weights':<24}{'moved after 1 step':>20}{f'moved after {args.steps}':>20}")
    print(f"{'fp32':<24}{fp32[0]:>20.1%}{fp32[-1]:>20.1%}")
    print(f"{'bf16 compute':<24}{bf16[0]:>20.1%}{bf16[-1]:>20.1%}")
    print(f"ratio bf16/fp32 after {args.steps} steps: {bf16[-1] / max(fp32[-1], 1e-12):.3f} (1.0 = nothing lost)")


if __name__ == "__main__":
    main()
