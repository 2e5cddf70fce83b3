"""Learner throughput on the default preset's model and batch shape: separate rows vs shared-prefix rows.

    python bench/learner.py            # SmolLM2-135M (the default preset's model), a default-preset GRPO batch
    python bench/learner.py --toy      # a random 2.6M Qwen2, seconds

The batch is shaped like a default-preset step: 2 responder groups of G answers over ~650-token prompts,
questioner rows with their own prompts, one verifier group of votes over one prompt. Prints, measured in
one run: the machine's fp32 GEMM rate on the model's layer shapes; then per layout (padded rows, packed
rows, shared-prefix rows, and those with the head chunked, engine.logprob_chunk_tokens): prompt tokens
computed per unique prompt token, step wall time, trained tokens/s and its share of what the GEMM rate
allows (forward + backward = 3x forward FLOPs of the tokens computed); each layout's gradient against the
padded one; the chunked head and bf16 autocast against the fp32 whole head, alternated; bare
forward+backward on the padded micro-batches (spell's own overhead); where the shared step's time goes.
"""

from __future__ import annotations

import argparse
import random

import torch
from _common import bench_model, describe, forward_flops_per_token, gemm_rate, head_rate, machine, timed
from transformers import AutoModelForCausalLM

from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.engine.learner.layouts import padded_batch


def default_batch(vocab: int, group: int, prompt_tokens: int, votes: int, seed: int = 0) -> list[TrainSequence]:
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(n)]

    seqs = []
    for _ in range(2):  # responder groups: G answers over one prompt
        p = ids(prompt_tokens + rng.randint(-50, 50))
        seqs += [TrainSequence(p, ids(rng.randint(8, 24)), advantage=rng.uniform(-1, 1)) for _ in range(group)]
    seqs += [TrainSequence(ids(600), ids(rng.randint(60, 128)), advantage=rng.uniform(-1, 1)) for _ in range(2)]
    p = ids(prompt_tokens // 2)
    seqs += [TrainSequence(p, ids(rng.randint(2, 6)), advantage=rng.uniform(-1, 1)) for _ in range(votes)]
    return seqs


def grads(model, learner: Learner, seqs) -> torch.Tensor:
    """The flattened gradient of one step's loss (the optimizer step itself is not taken)."""
    model.train()
    model.zero_grad(set_to_none=True)
    learner.backward(seqs)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="random 2.6M Qwen2 instead of SmolLM2-135M")
    ap.add_argument("--group", type=int, default=4, help="responder.group_size G")
    ap.add_argument("--prompt-tokens", type=int, default=650)
    ap.add_argument("--votes", type=int, default=3)
    ap.add_argument("--budget", type=int, default=4096, help="engine.train_token_budget of the default preset")
    ap.add_argument("--chunk", type=int, default=128, help="engine.logprob_chunk_tokens of the chunked-head arm")
    args = ap.parse_args()
    path = bench_model(args.toy)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    seqs = default_batch(model.config.vocab_size, args.group, args.prompt_tokens, args.votes)
    total = sum(len(s.prompt_ids) + len(s.response_ids) for s in seqs)
    unique_prompt = sum(len(p) for p in {tuple(s.prompt_ids) for s in seqs})
    limit, head_limit = gemm_rate(model), head_rate(model)
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(f"model: {describe(model)}; {len(seqs)} sequences, {total} tokens, {unique_prompt} unique prompt tokens")
    print(f"fp32 GEMM rate on the model's layer shapes: {limit / 1e9:.1f} GFLOP/s, lm_head {head_limit / 1e9:.1f}")

    layouts = {
        "padded": LearnerSettings(token_budget=args.budget, lr=0.0, shared_prefix=False),
        "packed": LearnerSettings(token_budget=args.budget, lr=0.0, packing=True, shared_prefix=False),
        "shared": LearnerSettings(token_budget=args.budget, lr=0.0, shared_prefix=True),
        "chunked": LearnerSettings(token_budget=args.budget, lr=0.0, shared_prefix=True, logprob_chunk=args.chunk),
    }
    walls, grad = {}, {}
    for name, settings in layouts.items():
        learner = Learner(model, settings)
        t, m = timed(lambda lr=learner: lr.train_step(seqs), repeats=1)
        walls[name] = t
        computed = m["computed_tokens"]
        resp = sum(len(s.response_ids) for s in seqs)
        prompt_computed = computed - resp
        # what the GEMM rates allow: forward + backward = 3x the forward FLOPs of the tokens computed, each
        # attending to half a sequence on average (what causal attention within each sequence needs), the
        # lm_head only where a response token is predicted
        per_token = forward_flops_per_token(model, total / len(seqs) / 2, head=False)
        head = 2 * model.config.hidden_size * model.config.vocab_size
        ideal = 3 * (computed * per_token / limit + resp * head / head_limit)
        print(
            f"{name:>6}: {t:.1f}s, {m['micro_batches']:.0f} micro-batches, {computed:.0f} tokens computed "
            f"(prompt {prompt_computed / unique_prompt:.2f}x unique), {total / t:.0f} sequence tok/s, "
            f"{100 * ideal / t:.0f}% of the GEMM limit"
        )
        grad[name] = grads(model, learner, seqs)
    ref = grad["padded"]
    for name in ("packed", "shared", "chunked"):
        rel = (grad[name] - ref).norm() / ref.norm()
        print(f"gradient {name} vs padded: relative L2 difference {rel:.2e}")
    print(f"speed-up shared vs padded: {walls['padded'] / walls['shared']:.2f}x   (target >= 1.8x)")
    # one timed step per arm swings by 25% on this box: the shared step with the head chunked, and under bf16
    # autocast (model.dtype=bfloat16: fp32 master weights, bf16 matmuls), against fp32, alternated, best of 2
    arms = {"shared": ("shared", None), "chunked": ("chunked", None), "bf16": ("shared", torch.bfloat16)}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(2):
        for name, (layout, autocast) in arms.items():
            step = Learner(model, layouts[layout], autocast=autocast).train_step
            times[name].append(timed(lambda st=step: st(seqs), repeats=1)[0])
    best = {name: min(ts) for name, ts in times.items()}
    print(f"shared with the head chunked ({args.chunk} tokens) vs whole, alternated, best of 2: "
          f"{best['chunked']:.1f}s vs {best['shared']:.1f}s, {best['shared'] / best['chunked']:.2f}x")  # fmt: skip
    g16 = grads(model, Learner(model, layouts["shared"], autocast=torch.bfloat16), seqs)
    print(f"shared under bf16 autocast vs fp32, alternated, best of 2: {best['bf16']:.1f}s vs {best['shared']:.1f}s, "
          f"{best['shared'] / best['bf16']:.2f}x; its gradient vs padded fp32: relative L2 difference "
          f"{(g16 - ref).norm() / ref.norm():.2e}")  # fmt: skip

    learner = Learner(model, layouts["padded"])
    mbs = [padded_batch([seqs[i] for i in mb], 0) for mb in learner.micro_batches(seqs)]
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)

    def bare():
        opt.zero_grad()
        for b in mbs:
            out = model(input_ids=b["ids"], attention_mask=b["attn"], position_ids=b["positions"], use_cache=False,
                        logits_to_keep=int(b["resp"]) + 1)  # fmt: skip
            out.logits.float().logsumexp(-1).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t_bare, _ = timed(bare, repeats=1)
    print(
        f"bare fwd+bwd on the padded micro-batches: {t_bare:.1f}s; spell padded / bare {walls['padded'] / t_bare:.2f}"
    )
    print_shares(Learner(model, layouts["shared"]), seqs)


# where the shared-prefix step's time goes: profiler self time of each aten op, by what the op is for
SHARE_OF = {
    "matmuls (decoder layers + lm_head)": {"mm", "addmm", "bmm", "matmul", "linear"},
    "attention (SDPA with the row's mask)": {"_scaled_dot_product_flash_attention_for_cpu",
                                             "_scaled_dot_product_flash_attention_for_cpu_backward",
                                             "scaled_dot_product_attention", "_scaled_dot_product_efficient_attention",
                                             "_efficient_attention_backward", "_flash_attention_backward"},
    "log-probs over the vocabulary": {"_log_softmax", "_log_softmax_backward_data", "log_softmax", "logsumexp",
                                      "gather", "_softmax", "_softmax_backward_data"},
    "mask build": {"logical_and", "logical_or", "eq", "ne", "lt", "le", "ge", "gt", "where", "arange"},
    "optimizer (AdamW) and clipping": {"_foreach_mul_", "_foreach_add_", "_foreach_addcmul_", "_foreach_addcdiv_",
                                       "_foreach_sqrt", "_foreach_div_", "_foreach_norm", "_foreach_lerp_",
                                       "linalg_vector_norm", "clamp"},
}  # fmt: skip


def print_shares(learner: Learner, seqs: list[TrainSequence]) -> None:
    from torch.profiler import ProfilerActivity, profile

    learner.train_step(seqs)  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        learner.train_step(seqs)
    events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in events) or 1.0
    seen: set[str] = set()
    parts = []
    for label, ops in SHARE_OF.items():
        mine = {key for key, _ in events if key.split("::")[-1] in ops and key not in seen}
        seen |= mine
        parts.append(f"{label} {100 * sum(us for key, us in events if key in mine) / total:.0f}%")
    rest = sum(us for key, us in events if key not in seen)
    recompute = " (gradient checkpointing recomputes the forward: off here)" if not getattr(
        learner.model, "is_gradient_checkpointing", False) else ""  # fmt: skip
    print(f"shared-prefix step, profiler self time: {', '.join(parts)}, everything else {100 * rest / total:.0f}%"
          f"{recompute}")  # fmt: skip


if __name__ == "__main__":
    main()
