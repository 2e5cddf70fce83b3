"""Does self-play help? Evaluate the responder on held-out labelled QA, run K iterations, evaluate again.

    python bench/learning.py --config configs/default.yaml --iterations 2 \
        --qa ../shared/data/hotpotqa/hotpotqa_train_100.json ../shared/data/tatqa/tatqa_dataset_dev.json --limit 20

Prints accuracy before and after (CEM / DocMath rule; plus the judge where `eval.judge` is set) and the
paired difference with a 95% bootstrap confidence interval over questions. Same prompts, same seeds.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def evaluate(model_path: str, cfg, items_by_bench: dict, judge_kind: str) -> dict[str, dict[str, float]]:
    from flows.eval import make_judge
    from spell.engine.policy import Policy, PolicySpec
    from spell.eval.runner import run_benchmark

    policy = Policy(PolicySpec.from_config(cfg, model_path=model_path, train=False))
    judge = make_judge(cfg, policy, Path(tempfile.mkdtemp()) / "judge.jsonl") if judge_kind != "none" else None
    out = {}
    for bench, items in items_by_bench.items():
        res = run_benchmark(
            bench,
            items,
            cfg.eval,
            policy.render,
            policy.rollout,
            judge,
            seed=cfg.run.seed,
            prefill=cfg.rollout.prefills("responder"),
        )
        out[bench] = {q["item_id"]: q["mean_score"] for q in res.questions}
        if judge is not None:  # the rule alone, besides max(rule, judge)
            out[bench + "/rule"] = {q["item_id"]: q["mean_rule"] for q in res.questions}
    return out


def bootstrap_ci(diffs: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(reps))
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--checkpoint", default=None, help="start model folder (default: the preset's model)")
    ap.add_argument("--qa", nargs="+", required=True, help="labelled QA files (HotpotQA, MuSiQue, TAT-QA, JSONL)")
    ap.add_argument("--limit", type=int, default=20, help="questions per QA file")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    from _common import machine

    from flows.iteration import spell_iteration
    from spell.config import load_config
    from spell.engine.loading import resolve_model_path
    from spell.eval.benchmarks import EvalItem
    from spell.qa import load_labelled_qa

    runs = tempfile.mkdtemp(prefix="spell-learning-")
    ov = [f"run.runs_dir={runs}", f"eval.n_samples={args.samples}", "eval.pass_k=[1]", *args.set]
    cfg = load_config(args.config, ov)
    start = args.checkpoint or resolve_model_path(cfg.model.path, str(Path(runs) / ".models"))
    items_by_bench: dict[str, list] = {}
    for f in args.qa:
        if not Path(f).is_file():
            print(f"skipping {f}: not found (the shared data folder is absent on this machine)")
            continue
        qa = load_labelled_qa(f, limit=args.limit)
        bench = "docmath" if qa and qa[0].task == "docmath_qa" else "hotpotqa"
        items_by_bench[f"{Path(f).stem}:{bench}"] = [
            EvalItem(x.qa_id, bench, "\n".join(x.documents), x.question, None, x.golds) for x in qa
        ]
    if not items_by_bench:
        sys.exit("no QA file found: nothing to evaluate")
    by_bench = {name.split(":")[1]: items for name, items in items_by_bench.items()}

    before = evaluate(start, cfg, by_bench, cfg.eval.judge)
    for k in range(1, args.iterations + 1):
        spell_iteration(run="learning", config=args.config, iteration=k, overrides=[*ov, f"model.path={start}"])
    final = Path(runs) / "learning" / "checkpoints" / f"iter_{args.iterations:04d}" / "model"
    after = evaluate(str(final), cfg, by_bench, cfg.eval.judge)

    print(f"machine: {machine()}")
    print(f"config: {args.config}; {args.iterations} iterations from {start}; {args.samples} samples/question")
    for key in before:
        ids = sorted(before[key])
        b = [before[key][i] for i in ids]
        a = [after[key][i] for i in ids]
        diffs = [y - x for x, y in zip(b, a, strict=True)]
        lo, hi = bootstrap_ci(diffs)
        label = key if "/" in key else key + (" (max(rule, judge))" if cfg.eval.judge != "none" else " (rule)")
        print(
            f"{label:<36} n={len(ids):>3}  before {100 * sum(b) / len(b):5.1f}%  after {100 * sum(a) / len(a):5.1f}%"
            f"  diff {100 * sum(diffs) / len(diffs):+5.1f} pts  95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        )


if __name__ == "__main__":
    main()
