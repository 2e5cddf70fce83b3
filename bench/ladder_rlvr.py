"""Rung A of the learning ladder (issue 25): can this learner learn at this budget at all? The paper's static
RLVR baseline (`run.mode=rlvr`) trains the responder on labelled short-context questions with the gold rule
as its reward, against the same run with a fair-coin reward (`reward.random_reward`): same seed, data order,
steps and settings. Both are scored greedily, before and after, on held-out questions disjoint from the
training pool (`spell.data.heldout`, the first `--per-set` of each set; the pool is the rest, less every item
that shares a source question or a document with the held-out ones). The verdict is the difference in
differences, gold arm minus random arm, on token F1 and cover-EM, with a 95% bootstrap CI over questions.
If the gold arm cannot beat the coin, no SPELL claim can be made at this budget.

    .venv/bin/python bench/ladder_rlvr.py --iterations 12 --out runs/ladder_a     # ~1 hour on 2 cores

A killed run resumes: finished arms and evaluations are cached under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spell.vocab import DOCMATH, MULTIPLE_CHOICE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ARMS = {"gold": [], "coin": ["reward.random_reward=true"]}
TRAIN = [  # the responder's side of the RLVR baseline at 2-core scale (learning-notes: G=8, T=1, lr 1e-5)
    "run.mode=rlvr",
    "responder.group_size=8",
    "rollout.temperature=1.0",
    "rollout.top_p=1.0",
    "sampling.questions_per_round=16",
    "sampling.train_batch_size=8",
    "sampling.max_rounds=2",
    f"data.task_weights.{MULTIPLE_CHOICE}=0",  # every held-out and training question is general QA
    f"data.task_weights.{DOCMATH}=0",
]


def split(data: str, per_set: int) -> tuple[dict[str, list], list]:
    """Held-out sets (the first `per_set` of each) and a training pool sharing no source or document with them."""
    from spell.data.heldout import held_out

    held, pool = {}, []
    for name, qa in held_out(data).items():
        held[name] = qa[:per_set]
        sources = {x.qa_id.split("-s")[0] for x in held[name]}
        docs = {d for x in held[name] for d in x.documents}
        pool += [x for x in qa[per_set:] if x.qa_id.split("-s")[0] not in sources and not docs & set(x.documents)]
    return held, pool


def evaluate(model_path: str, cfg, held: dict[str, list], cache: Path) -> dict[str, dict[str, float]]:
    """Greedy F1 and cover-EM per held-out question, cached as JSON (the same prompts for every model)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    from spell.engine.policy import Policy, PolicySpec
    from spell.eval.benchmarks import EvalItem
    from spell.eval.runner import run_benchmark

    policy = Policy(PolicySpec.from_config(cfg, model_path=model_path, train=False))
    ec = cfg.eval.model_copy(update={"n_samples": 1, "temperature": 0.0, "max_new_tokens": 32, "pass_k": [1]})
    out: dict[str, dict[str, float]] = {"f1": {}, "cem": {}, "words": {}}
    for name, qa in held.items():
        items = [EvalItem(f"{name}:{x.qa_id}", "hotpotqa", "\n".join(x.documents), x.question, None, x.golds)
                 for x in qa]  # fmt: skip
        res = run_benchmark("hotpotqa", items, ec, policy.render, policy.rollout, None, seed=cfg.run.seed,
                            prefill=cfg.rollout.prefills("responder"))  # fmt: skip
        for s in res.samples:
            out["f1"][s["item_id"]] = float(s["f1"])
            out["cem"][s["item_id"]] = float(s["rule"])
            out["words"][s["item_id"]] = float(len((s["prediction"] or "").split()))
    del policy
    cache.write_text(json.dumps(out))
    return out


def train_arm(arm: str, config: str, out: Path, iterations: int, overrides: list[str]) -> str:
    """`iterations` iterations of one arm (run name `arm` under out/runs); returns its last checkpoint. A
    killed arm resumes after its last checkpoint."""
    from flows.iteration import spell_iteration
    from storage.layout import RunLayout

    runs = str(out / "runs")
    ov = [f"run.runs_dir={runs}", "tracking.mlflow=false", *overrides]
    layout = RunLayout(runs, arm)
    for k in range(1, iterations + 1):
        if (layout.root / "checkpoints" / f"iter_{k:04d}" / "model").is_dir():
            continue
        result = spell_iteration(run=arm, config=config, iteration=k, overrides=ov)
        if not isinstance(result, dict):
            sys.exit(f"{arm} iteration {k} failed: {result}")
    return str(layout.root / "checkpoints" / f"iter_{iterations:04d}" / "model")


def ladder_args(doc: str, config: str, iterations: int, per_set: int, out: str) -> argparse.Namespace:
    """The options every rung takes."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--config", default=config)
    ap.add_argument("--iterations", type=int, default=iterations)
    ap.add_argument("--per-set", type=int, default=per_set, help="held-out questions per set (the first ones)")
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--out", default=out)
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides for both arms")
    return ap.parse_args()


def training_signal(runs: Path, arm: str) -> str:
    """What the arm trained on: answers, their mean reward, the rule's accuracy, usable groups per iteration."""
    from storage.views import open_history

    con = open_history(str(runs), arm)
    n, reward, rule = con.execute(
        "select count(*), avg(r.reward), avg(s.rule_score) from rewards r join responses s "
        "on r.sample_id = s.response_id and r.iteration = s.iteration where r.role = 'responder'"
    ).fetchone()
    groups = con.execute("select count(distinct group_id) from batch where role = 'responder'").fetchone()[0]
    return f"{n} answers, mean reward {reward:.3f}, rule accuracy {rule:.3f}, {groups} responder groups trained"


def prepare(args: argparse.Namespace) -> tuple[dict[str, list], list, Path] | None:
    """Held-out sets, training pool and output folder of a rung; None (with why) without the shared data."""
    held, pool = split(args.data, args.per_set)
    if not held:
        print(f"no held-out data under {args.data} (the shared data folder is absent on this machine): nothing run")
        return None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return held, pool, out


def main() -> int:
    args = ladder_args(__doc__ or "", "configs/default.yaml", 12, 60, "runs/ladder_a")
    from _common import machine

    from spell.config import load_config
    from spell.engine.models.loading import resolve_model_path
    from storage.learning import paired_ci

    if (ready := prepare(args)) is None:
        return 0
    held, pool, out = ready
    pool_file = out / "pool.jsonl"
    pool_file.write_text("".join(json.dumps({"id": x.qa_id, "documents": list(x.documents), "question": x.question,
                                             "answer": list(x.golds)}) + "\n" for x in pool))  # fmt: skip
    cfg = load_config(args.config, [f"run.runs_dir={out / 'runs'}", *args.set])
    start = resolve_model_path(cfg.model.path, str(out / ".models"))
    before = evaluate(start, cfg, held, out / "eval_base.json")
    arms = {arm: [f"data.qa_file={pool_file}", f"model.path={start}", *TRAIN, *extra, *args.set]
            for arm, extra in ARMS.items()}  # fmt: skip
    after = {arm: evaluate(train_arm(arm, args.config, out, args.iterations, ov), cfg, held, out / f"eval_{arm}.json")
             for arm, ov in arms.items()}  # fmt: skip

    print(f"machine: {machine()}")
    print(f"config {args.config} + {' '.join(TRAIN + args.set)}; {args.iterations} iterations per arm")
    print(f"training pool {len(pool)} questions; held out {sum(len(v) for v in held.values())} "
          f"({', '.join(f'{k} {len(v)}' for k, v in held.items())})")  # fmt: skip
    for arm in ARMS:
        print(f"  {arm:<5} trained on {training_signal(out / 'runs', arm)}")
    ids = sorted(before["f1"])
    print(f"{'metric':<8}{'base':>7}{'gold':>7}{'coin':>7}   gold-base [95% CI]     coin-base [95% CI]     "
          f"gold-coin (diff in diff) [95% CI]")  # fmt: skip
    for metric in ("f1", "cem", "words"):
        scale = 1 if metric == "words" else 100
        b = [before[metric][i] for i in ids]
        g = [after["gold"][metric][i] for i in ids]
        c = [after["coin"][metric][i] for i in ids]
        cols = []
        for x, y in ((g, b), (c, b), (g, c)):
            d = [scale * (p - q) for p, q in zip(x, y, strict=True)]
            lo, hi = paired_ci(d)
            cols.append(f"{sum(d) / len(d):+6.1f} [{lo:+.1f}, {hi:+.1f}]")
        mean = [scale * sum(v) / len(v) for v in (b, g, c)]
        print(f"{metric:<8}{mean[0]:>7.1f}{mean[1]:>7.1f}{mean[2]:>7.1f}   " + "   ".join(f"{s:<20}" for s in cols))
    print("(the diff in diff is after-gold minus after-coin per question: both arms start from the same base)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
