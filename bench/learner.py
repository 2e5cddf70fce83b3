"""Learner throughput: spell's GRPO step vs a bare forward+backward on the same tokens, packed.

    python bench/learner.py [--sequences 48] [--budget 4096]

Prints trained tokens/s of both, their ratio (target >= 0.9) and the padding fraction of spell's
token-budget micro-batches on a mix of long and short sequences (target < 10%), then the same step
with `engine.packing` (no padding; on CPU the SDPA block mask costs what padding saved, on GPU
flash-attn's varlen kernel needs no mask).
"""

from __future__ import annotations

import argparse
import random

import torch
from _common import machine, small_model, timed
from transformers import AutoModelForCausalLM

from spell.engine.layouts import padded_batch
from spell.engine.learner import Learner, LearnerSettings, TrainSequence


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=48)
    ap.add_argument("--budget", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    path = small_model(args.hidden)
    model = AutoModelForCausalLM.from_pretrained(path)
    vocab = model.config.vocab_size
    rng = random.Random(0)
    seqs = []
    for i in range(args.sequences):
        long = i % 4 == 0  # a mix: a quarter long prompts, the rest short
        p = [rng.randrange(3, vocab) for _ in range(rng.randint(600, 1000) if long else rng.randint(30, 200))]
        r = [rng.randrange(3, vocab) for _ in range(rng.randint(20, 200))]
        seqs.append(TrainSequence(p, r, advantage=rng.uniform(-1, 1)))
    total = sum(len(s.prompt_ids) + len(s.response_ids) for s in seqs)

    learner = Learner(model, LearnerSettings(token_budget=args.budget))
    t_ours, metrics = timed(lambda: learner.train_step(seqs), repeats=2)
    packed = Learner(model, LearnerSettings(token_budget=args.budget, packing=True))
    t_packed, m_packed = timed(lambda: packed.train_step(seqs), repeats=2)

    # Reference: the same tokens packed into rows of `budget` tokens, plain LM loss, forward+backward.
    flat = [t for s in seqs for t in s.prompt_ids + s.response_ids]
    rows = [flat[i : i + args.budget] for i in range(0, len(flat), args.budget)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def bare():
        opt.zero_grad()
        for row in rows:
            ids = torch.tensor([row])
            out = model(input_ids=ids, labels=ids, use_cache=False)
            (out.loss * len(row) / len(flat)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t_bare, _ = timed(bare, repeats=2)

    # Second reference: bare fwd+bwd on spell's own padded micro-batches (isolates spell's overhead:
    # collation, log-probs, the clipped loss).
    mbs = [padded_batch([seqs[i] for i in mb], 0) for mb in learner.micro_batches(seqs)]

    def bare_same_batches():
        opt.zero_grad()
        for b in mbs:
            out = model(
                input_ids=b["ids"],
                attention_mask=b["attn"],
                position_ids=b["positions"],
                use_cache=False,
                logits_to_keep=int(b["resp"]) + 1,
            )
            out.logits.float().logsumexp(-1).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t_same, _ = timed(bare_same_batches, repeats=2)
    ours, ref, same = total / t_ours, total / t_bare, total / t_same
    print(f"machine: {machine()}")
    print(
        f"model: random Qwen2, hidden {args.hidden}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; "
        f"{len(seqs)} sequences, {total} tokens, token budget {args.budget}"
    )
    print(
        f"spell Learner.train_step: {t_ours:.2f}s = {ours:.0f} tok/s "
        f"({metrics['micro_batches']:.0f} micro-batches, padding {100 * metrics['padding_fraction']:.1f}%)"
    )
    print(f"bare packed fwd+bwd:      {t_bare:.2f}s = {ref:.0f} tok/s ({len(rows)} packed rows)")
    print(f"bare fwd+bwd on spell's micro-batches: {t_same:.2f}s = {same:.0f} tok/s")
    print(f"ratio (spell / bare packed): {ours / ref:.3f}   (target >= 0.9)")
    print(f"ratio (spell / bare on the same micro-batches): {ours / same:.3f}   (spell's own overhead)")
    print(f"padding fraction: {100 * metrics['padding_fraction']:.1f}%   (target < 10%)")
    print(
        f"spell with engine.packing (SDPA block mask): {t_packed:.2f}s = {total / t_packed:.0f} tok/s, "
        f"{m_packed['micro_batches']:.0f} rows, padding {100 * m_packed['padding_fraction']:.1f}%; "
        f"ratio packed / padded {t_ours / t_packed:.3f}"
    )


if __name__ == "__main__":
    main()
