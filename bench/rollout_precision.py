"""How far do the bf16 rollout switches take the sampler from the policy the learner scores?

    python bench/rollout_precision.py            # default model, the default preset's first rounds (~5 min)
    python bench/rollout_precision.py --toy      # a random 2.6M Qwen2 (seconds; the mechanics only)

The learner scores every sampled token in fp32 (its own log-probs are the GRPO step's old log-probs), so a
bf16 prompt pass or bf16 decode Linears make the rollouts slightly off-policy, by an amount no loss term
sees. Each arm generates the default preset's question round (12 prompts, T=0.7, up to 96 new tokens) and a
respond round (6 of those questions over their whole clusters, G=4, up to 24 new) and records the
distribution it drew every token from; the fp32 model then scores the same prompt and completion in one
forward pass, as the GRPO step does. Per arm: the mean KL(sampler || policy) per token over the whole
vocabulary at the sampling temperature, and the log-ratio log p_policy - log p_sampler at the drawn tokens
(mean |.|, 99th percentile, share outside log 0.8 .. log 1.2, where a PPO clip would act).

Controls, in the same run: the fp32 default arm (the same function in another summation order: its figures
are the method's floor) and the scale of one GRPO step on the same tokens (the default preset's learning
rate, random group-normalised advantages): the KL between the policy before and after that step.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import torch
from _common import bench_model, describe, machine

from spell.advantages import grouped_zscore
from spell.config import load_config
from spell.data.corpus import load_corpus
from spell.engine.learner.core import LearnerSettings
from spell.engine.policy import Policy, PolicySpec
from spell.engine.rollout.hf_backend import TransformersGenerator
from spell.engine.rollout.interface import SamplingParams, render_prompt
from spell.history import HistoryMemory
from spell.roles import prompts as P
from spell.roles import responder
from spell.sampling import TaskSampler
from spell.stages.sample_docs import sample_prompts

ARMS = {
    "fp32 (default; control)": {},
    "engine.prefill_dtype=bfloat16": {"prefill_dtype": torch.bfloat16},
    "prefill + decode_dtype=bfloat16": {"prefill_dtype": torch.bfloat16, "decode_dtype": torch.bfloat16},
}


def round_prompts(cfg: Any, tok: Any) -> tuple[list[list[int]], list[dict[str, Any]], Any]:
    """The default preset's first question round: prompt ids (prefill included, as the rollout sends them)."""
    corpus = load_corpus(cfg.data.corpus, seed=cfg.run.seed, cache_dir=Path(cfg.run.runs_dir) / ".corpus")
    sampler = TaskSampler(corpus.by_task(), cfg.data.task_weights, seed=cfg.run.seed)
    rows = sample_prompts(corpus, sampler, HistoryMemory(), cfg, "bench", 1, 1)
    ids = []
    for r in rows:
        pf = (
            P.prefill_questioner(r["task"], cfg.rollout.questioner_opening)
            if cfg.rollout.prefills("questioner")
            else ""
        )
        ids.append(render_prompt(tok, r["prompt"]) + list(tok(pf, add_special_tokens=False)["input_ids"]))
    return ids, rows, corpus


def respond_prompts(tok: Any, rows: list[dict[str, Any]], texts: list[str], corpus: Any, count: int) -> list[list[int]]:
    """Responder prompts over the whole cluster for the first `count` proposals (their text as the question:
    the sampler's precision does not depend on whether a proposal parses)."""
    out = []
    for r, text in list(zip(rows, texts, strict=True))[:count]:
        question = text.replace("```json", "").replace("```", "").strip()[:400] or "What is this about?"
        docs = corpus.clusters[r["cluster_id"]].documents
        out.append(render_prompt(tok, responder.build_prompt(r["task"], question, docs)))
    return out


def captured_generate(gen: TransformersGenerator, ids: list[list[int]], params: SamplingParams) -> tuple[list, dict]:
    """Generate, keeping the log-distribution each (prompt, sample) drew each token from (tempered)."""
    drawn: dict[tuple[int, int], list[torch.Tensor]] = {}
    key_of: dict[int, tuple[int, int]] = {}
    make, sample = gen._generators, gen._sample

    def generators(prompt_indices: Any, p: SamplingParams) -> Any:
        gens = make(prompt_indices, p)
        for k, g in enumerate(gens or []):
            key_of[id(g)] = (prompt_indices[k // p.n], k % p.n)
        return gens

    def sample_and_keep(logits: torch.Tensor, p: SamplingParams, gens: Any) -> torch.Tensor:
        logp = torch.log_softmax(logits.float() / p.temperature, -1)
        for j, g in enumerate(gens):
            drawn.setdefault(key_of[id(g)], []).append(logp[j].clone())
        return sample(logits, p, gens)

    gen._generators, gen._sample = generators, sample_and_keep  # type: ignore[method-assign]
    try:
        return gen.generate(ids, params), drawn
    finally:
        del gen._generators, gen._sample


@torch.inference_mode()
def policy_logprobs(model: Any, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    """The fp32 policy's tempered log-distributions at each completion token, in one forward pass."""
    x = torch.tensor([prompt + completion])
    logits = model(input_ids=x).logits[0, len(prompt) - 1 : len(prompt) + len(completion) - 1]
    return torch.log_softmax(logits.float() / temperature, -1)


def compare(model: Any, ids: list[list[int]], rows: list, drawn: dict, temperature: float) -> dict[str, Any]:
    kls, ratios = [], []
    for pi, comps in enumerate(rows):
        for c in comps:
            if not c.token_ids:
                continue
            q = torch.stack(drawn[(pi, c.sample_index)][: len(c.token_ids)])
            p = policy_logprobs(model, ids[pi], list(c.token_ids), temperature)
            kls.append((q.exp() * (q - p)).sum(-1))
            t = torch.tensor(c.token_ids)
            ratios.append(p.gather(1, t[:, None])[:, 0] - q.gather(1, t[:, None])[:, 0])
    kl, r = torch.cat(kls), torch.cat(ratios)  # per token, over every completion of the round
    clip = ((r < torch.log(torch.tensor(0.8))) | (r > torch.log(torch.tensor(1.2)))).float().mean()
    return {"tokens": len(r), "kl": kl.mean().item(), "abs": r.abs().mean().item(),
            "p99": r.abs().quantile(0.99).item(), "clip": clip.item(), "max": r.abs().max().item()}  # fmt: skip


def step_scale(policy: Policy, batch: list[tuple[list[int], list[int]]], group: int, temperature: float, seed: int):
    """KL(policy before || after) per token of one default-lr GRPO step on `batch` (random advantages,
    normalised per group of `group`): the size of the change the learner itself makes each step."""
    rng = random.Random(seed)
    raw = [rng.choice((0.0, 1.0)) for _ in batch]
    adv = grouped_zscore(raw, [i // group for i in range(len(batch))])  # the project's GRPO normalisation
    seqs = [{"prompt_ids": p, "response_ids": c, "advantage": float(a)} for (p, c), a in zip(batch, adv, strict=True)]
    before = [policy_logprobs(policy.model, p, c, temperature) for p, c in batch]
    policy.train_step(seqs)
    after = [policy_logprobs(policy.model, p, c, temperature) for p, c in batch]
    return torch.cat([(b.exp() * (b - a)).sum(-1) for b, a in zip(before, after, strict=True)]).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="random 2.6M Qwen2 instead of SmolLM2-135M")
    args = ap.parse_args()
    cfg = load_config("configs/default.yaml", [])
    path = bench_model(args.toy)
    spec = PolicySpec(path, device="cpu", learner=LearnerSettings(lr=cfg.optim.lr, shared_prefix=True))
    policy = Policy(spec)
    model, tok = policy.model, policy.tokenizer
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(f"model: {describe(model)}")
    r, T = cfg.rollout, cfg.rollout.temperature
    q_ids, q_rows, corpus = round_prompts(cfg, tok)
    print(f"question prompts: {len(q_ids)}, {sum(map(len, q_ids)) / len(q_ids):.0f} tokens on average")
    qp = SamplingParams(n=1, temperature=T, top_p=r.top_p, top_k=r.top_k, max_new_tokens=96, seed=1,
                        stop=["```"], include_stop=True)  # fmt: skip
    rp = SamplingParams(n=cfg.responder.group_size, temperature=T, top_p=r.top_p, top_k=r.top_k, max_new_tokens=24,
                        seed=2)  # fmt: skip
    r_ids: list[list[int]] = []
    print(f"{'arm':<34} {'round':<9} {'tokens':>6} {'KL/token':>9} {'mean|lr|':>9} {'p99|lr|':>8} {'max|lr|':>8} "
          f"{'clipped':>8} {'prefill s':>9} {'decode s':>8}")  # fmt: skip
    respond_batch: list[tuple[list[int], list[int]]] = []
    for arm, kw in ARMS.items():
        for name, params in (("question", qp), ("respond", rp)):
            ids = q_ids if name == "question" else r_ids  # the respond prompts come from the first question round
            gen = TransformersGenerator(model, tok, token_budget=cfg.engine.generation_token_budget, **kw)
            started = time.perf_counter()
            rows, drawn = captured_generate(gen, ids, params)
            wall = time.perf_counter() - started
            if name == "question" and not r_ids:  # the respond round asks the fp32 arm's proposals, in every arm
                r_ids = respond_prompts(tok, q_rows, [tok.decode(c[0].token_ids) for c in rows], corpus, 6)
                print(f"respond prompts: {len(r_ids)}, {sum(map(len, r_ids)) / len(r_ids):.0f} tokens on average")
            if name == "respond" and not respond_batch:
                respond_batch = [(ids[c.prompt_index], list(c.token_ids)) for row in rows for c in row if c.token_ids]
            m = compare(model, ids, rows, drawn, T)
            print(f"{arm:<34} {name:<9} {m['tokens']:>6} {m['kl']:>9.2e} {m['abs']:>9.2e} {m['p99']:>8.2e} "
                  f"{m['max']:>8.2e} {100 * m['clip']:>7.2f}% {gen.prefill_seconds:>9.1f} {gen.decode_seconds:>8.1f}"
                  f"   ({wall:.1f} s)")  # fmt: skip
    kl = step_scale(policy, respond_batch, cfg.responder.group_size, T, seed=3)
    print(f"scale: one GRPO step (lr {cfg.optim.lr:g}, {len(respond_batch)} respond samples, random group-normalised "
          f"advantages) moves the policy by KL {kl:.2e} a token on those tokens")  # fmt: skip


if __name__ == "__main__":
    main()
