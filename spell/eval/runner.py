"""Run one benchmark: prompts, n samples per question, rule and judge scores, aggregation.

Per sample: score = max(rule, judge) (judge absent counts as 0; LongBench-v2 is scored by the rule alone).
Per question: mean over its n samples and pass@k (the paper's unbiased estimator, or the released code's
best@k with `eval.pass_k_estimator=bootstrap`). Per benchmark: means over questions. LongBench QA is scored
against every listed answer, or the first alone with `eval.first_answer_only` (the released code's answers[0]).
The paper's Avg = mean of DocMath, Frames, LB-MQA (mean of HotpotQA, 2Wiki, MuSiQue) and LB-v2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spell.config import EvalConfig
from spell.eval.benchmarks import LB_MQA, EvalItem
from spell.eval.judge import JUDGE_PROMPT
from spell.eval.metrics import (
    BENCHMARK_TASK,
    best_of_k,
    cover_exact_match,
    docmath_match,
    extract_answer,
    extract_choice,
    pass_at_k,
    qa_f1,
)
from spell.eval.prompts import item_prompt, middle_truncate
from spell.eval.released import released_choice, released_docmath_answer, released_docmath_match
from spell.roles.prompts import prefill_responder

Row = dict[str, Any]


@dataclass
class BenchmarkResult:
    benchmark: str
    samples: list[Row] = field(default_factory=list)
    questions: list[Row] = field(default_factory=list)
    summary: Row = field(default_factory=dict)


def rule_score(item: EvalItem, text: str, scorer: str = "released") -> tuple[str | None, float, float]:
    """(prediction, rule score, F1) of one response. `scorer` (eval.scorer): "released" reads LongBench-v2
    letters and DocMath numbers as the released SPELL evaluation does (spell.eval.released), "spell" as
    the training rules do (spell.rules)."""
    released = scorer == "released"
    if item.benchmark == "longbench-v2":
        pred = released_choice(text) if released else extract_choice(text)
        return pred, float(pred is not None and pred == item.golds[0]), 0.0
    if item.benchmark == "docmath":
        if released:
            pred = released_docmath_answer(text)
            return pred, float(pred is not None and any(released_docmath_match(pred, g) for g in item.golds)), 0.0
        pred = extract_answer(text, BENCHMARK_TASK[item.benchmark])
        return pred, float(any(docmath_match(pred, g) for g in item.golds)), 0.0
    pred = extract_answer(text, BENCHMARK_TASK[item.benchmark])
    return pred, cover_exact_match(pred, item.golds), qa_f1(pred, item.golds)


def _seed(benchmark: str, base: int) -> int:
    return base + int.from_bytes(hashlib.sha256(benchmark.encode()).digest()[:2], "little")


def run_benchmark(
    benchmark: str,
    items: Sequence[EvalItem],
    cfg: EvalConfig,
    render: Callable[[list[str]], list[list[int]]],
    rollout: Callable[[list[list[int]], dict[str, Any]], list[Row]],
    judge: Any | None,
    seed: int = 0,
    prefill: bool = False,
    progress: Callable[[str], None] | None = None,
    chunk: int = 8,
) -> BenchmarkResult:
    """`prefill` starts each answer with the template's answer phrase (as `rollout.prefill` does in training).
    Questions are generated `chunk` at a time, with progress (questions done, running rule score)."""
    from spell.progress import Progress

    res = BenchmarkResult(benchmark)
    first_only = cfg.first_answer_only and benchmark in LB_MQA  # the released code's answers[0]
    if first_only:
        items = [replace(it, golds=tuple(it.golds[:1])) for it in items]
    ids = [middle_truncate(x, cfg.max_input_tokens) for x in render([item_prompt(it) for it in items])]
    params = {
        "n": cfg.n_samples,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_new_tokens": cfg.max_new_tokens,
        "seed": _seed(benchmark, seed),
    }
    pre = None
    if prefill:
        pre = [prefill_responder(BENCHMARK_TASK[it.benchmark]) for it in items]
    rollouts: list[Row] = []
    right = 0.0
    with Progress(len(items), f"eval {benchmark}", unit="question", emit=progress) as bar:
        for i in range(0, len(items), chunk):
            part = {**params, "seed": params["seed"] + i}
            got = (
                rollout(ids[i : i + chunk], part, None, pre[i : i + chunk])
                if pre
                else rollout(ids[i : i + chunk], part)
            )
            rollouts += got
            for it, ro in zip(items[i : i + chunk], got, strict=True):
                right += sum(rule_score(it, c["text"], cfg.scorer)[1] for c in ro["completions"]) / max(
                    len(ro["completions"]), 1
                )
            bar.update(len(got), f"rule score {100 * right / len(rollouts):.1f}%")
    for it, ro, prompt_ids in zip(items, rollouts, ids, strict=True):
        for j, c in enumerate(ro["completions"]):
            pred, rule, f1 = rule_score(it, c["text"], cfg.scorer)
            res.samples.append(
                {
                    "benchmark": benchmark,
                    "item_id": it.item_id,
                    "sample": j,
                    "text": c["text"],
                    "prediction": pred,
                    "gold": it.golds[0],
                    "rule": rule,
                    "f1": f1,
                    "judge": None,
                    "judge_error": None,
                    "score": rule,
                    "finish_reason": c["finish_reason"],
                    "prompt_tokens": len(prompt_ids),
                    "response_tokens": len(c["token_ids"]),
                }
            )
    judged = judge is not None and benchmark != "longbench-v2"  # LongBench-v2 is scored by the rule alone
    if judged:
        by_id = {it.item_id: it for it in items}
        todo = [s for s in res.samples if s["prediction"] is not None and (cfg.judge_all or s["rule"] < 1.0)]
        prompts = [
            JUDGE_PROMPT.format(question=by_id[s["item_id"]].question, prediction=s["prediction"], gold=s["gold"])
            for s in todo
        ]
        for s, jr in zip(todo, judge.judge(prompts), strict=True):
            s["judge"] = jr.verdict
            s["judge_error"] = jr.error
            s["score"] = max(s["rule"], float(jr.verdict or 0))
    ks = [k for k in cfg.pass_k if k <= cfg.n_samples]
    for it in items:
        ss = [s for s in res.samples if s["item_id"] == it.item_id]
        n, c = len(ss), sum(1 for s in ss if s["score"] >= 0.5)
        q = {
            "benchmark": benchmark,
            "item_id": it.item_id,
            "n": n,
            "correct": c,
            "mean_score": sum(s["score"] for s in ss) / max(n, 1),
            "mean_rule": sum(s["rule"] for s in ss) / max(n, 1),
            "mean_judge": (sum(float(s["judge"] or 0) for s in ss) / max(n, 1)) if judged else None,
        }
        for k in ks:
            if n < k:
                q[f"pass@{k}"] = None
            elif cfg.pass_k_estimator == "bootstrap":
                q[f"pass@{k}"] = best_of_k([s["score"] for s in ss], k)
            else:
                q[f"pass@{k}"] = pass_at_k(n, c, k)
        res.questions.append(q)
    nq = max(len(res.questions), 1)
    res.summary = {
        "benchmark": benchmark,
        "questions": len(res.questions),
        "samples": len(res.samples),
        "score": sum(q["mean_score"] for q in res.questions) / nq,
        "rule": sum(q["mean_rule"] for q in res.questions) / nq,
        "judge": (sum(q["mean_judge"] or 0 for q in res.questions) / nq) if judged else None,
        "judge_failures": sum(1 for s in res.samples if s["judge_error"]),
        "scorer": cfg.scorer,
        "pass_k_estimator": cfg.pass_k_estimator,
        "golds": "first" if first_only else "all",
        **{f"pass@{k}": sum(q[f"pass@{k}"] or 0 for q in res.questions) / nq for k in ks},
    }
    return res


def paper_average(summaries: dict[str, Row], key: str = "score") -> float | None:
    """Avg of the paper's Table 1: DocMath, Frames, LB-MQA (mean of the three), LB-v2 (those present)."""
    cols = []
    for b in ("docmath", "frames"):
        if b in summaries:
            cols.append(summaries[b][key])
    mqa = [summaries[b][key] for b in LB_MQA if b in summaries]
    if mqa:
        cols.append(sum(mqa) / len(mqa))
    if "longbench-v2" in summaries:
        cols.append(summaries["longbench-v2"][key])
    return sum(cols) / len(cols) if cols else None


def format_table(summaries: dict[str, Row], ks: Sequence[int]) -> str:
    head = f"{'benchmark':<14}{'questions':>10}{'score':>8}{'rule':>8}{'judge':>8}" + "".join(
        f"{'pass@' + str(k):>9}" for k in ks
    )
    lines = [head, "-" * len(head)]
    for b, s in summaries.items():
        judge = "-" if s["judge"] is None else f"{100 * s['judge']:.1f}"
        lines.append(
            f"{b:<14}{s['questions']:>10}{100 * s['score']:>8.1f}{100 * s['rule']:>8.1f}{judge:>8}"
            + "".join(f"{100 * s.get(f'pass@{k}', 0):>9.1f}" for k in ks)
        )
    avg = paper_average(summaries)
    if avg is not None:
        lines.append(f"{'Avg (paper)':<14}{'':>10}{100 * avg:>8.1f}")
    return "\n".join(lines)
