"""Does self-play learn? K iterations, the signals a reward curve hides per iteration, trends with 95% CIs,
and held-out accuracy before and after with a paired 95% CI.

    python bench/learning.py --iterations 20 --runs-dir runs/learning          # configs/default.yaml
    python bench/learning.py --iterations 20 --runs-dir runs/learning --format-only   # the control

Per iteration (from the run's DuckDB views, `storage.learning`): the valid-question share (parsed,
grounded, not rejected by a guard), the good-case share (0 < responder accuracy < 1), the responder's
rule accuracy on its own questions (no judge involved), its reward accuracy (where a YES-biased verifier
shows), the verifier majority's agreement with decisive rule checks, its YES rate. Trends: change over
the run (least-squares slope x span) with a pairs-bootstrap CI over iterations. Held out: the labelled QA
in ../shared/data (HotpotQA and MuSiQue as multi-hop QA, TAT-QA as DocMath), sampled as `eval.*` says with
the run's seed, the same prompts before and after. `--format-only` runs the control in which every role is
rewarded for well-formed output only (`reward.format_only`): a rise there is format learning, not answers.
A killed bench resumes: iterations with a checkpoint are kept, and evaluations are cached as JSON in the run
(the base model's in the runs dir, shared by both arms), each sample's text beside it (`*.samples.jsonl`).
Run both arms into one `--runs-dir` and the second prints the difference in differences, SPELL minus
format-only, paired over the same held-out questions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_QA = [
    SHARED / "hotpotqa" / "hotpotqa_train_100.json",
    SHARED / "musique" / "musique_train_100.json",
    SHARED / "tatqa" / "tatqa_dataset_dev.json",
]
TRENDS = ("valid_share", "good_share", "rule_accuracy", "reward_accuracy", "verifier_agreement")


def evaluate(model_path: str, cfg, sets: list[tuple[str, str, list]]) -> dict:
    """Mean score per question for each held-out set (rule check; plus max(rule, judge) where a judge is set),
    and every sample under "samples"."""
    from flows.eval import make_judge
    from spell.engine.policy import Policy, PolicySpec
    from spell.eval.runner import run_benchmark

    policy = Policy(PolicySpec.from_config(cfg, model_path=model_path, train=False))
    judge = make_judge(cfg, policy, Path(tempfile.mkdtemp()) / "judge.jsonl") if cfg.eval.judge != "none" else None
    out: dict = {"samples": []}
    for name, bench, items in sets:
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
        out[name + " (rule)"] = {q["item_id"]: q["mean_rule"] for q in res.questions}
        keep = ("item_id", "sample", "gold", "prediction", "rule", "f1", "text")  # to read why a score moved
        out["samples"] += [{"set": name, **{k: x[k] for k in keep}} for x in res.samples]
        if judge is not None:
            out[name + " (max(rule, judge))"] = {q["item_id"]: q["mean_score"] for q in res.questions}
    return out


def cached_scores(cache: Path, key: dict) -> dict | None:
    """Scores saved in `cache` for `key` (what they were computed for), or None."""
    if cache.is_file() and (saved := json.loads(cache.read_text())).get("key") == key:
        return saved["scores"]
    return None


def evaluate_cached(model_path: str, cfg, sets: list[tuple[str, str, list]], cache: Path, key: dict) -> dict:
    """`evaluate`, kept in `cache` (JSON) with what it was computed for; a cache made for other sets is redone."""
    if (scores := cached_scores(cache, key)) is not None:
        return scores
    scores = evaluate(model_path, cfg, sets)
    cache.parent.mkdir(parents=True, exist_ok=True)
    samples = scores.pop("samples")
    cache.with_suffix(".samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
    cache.write_text(json.dumps({"key": key, "scores": scores}))
    return scores


def print_paired(label: str, before: dict, after: dict) -> None:
    """Per held-out set, then pooled over the rule scores: the mean before and after over the questions both
    hold, and the paired 95% CI of the difference."""
    from storage.learning import paired_ci

    pairs = {k: [(before[k][i], after[k][i]) for i in sorted(set(before[k]) & set(after.get(k, {})))] for k in before}
    rule = [k for k in pairs if k.endswith("(rule)")]
    if len(rule) > 1:
        pairs["pooled (rule)"] = [x for k in rule for x in pairs[k]]
    for name, xs in pairs.items():
        if not xs:
            continue
        diffs = [a - b for b, a in xs]
        lo, hi = paired_ci(diffs)
        print(
            f"  {name:<34} n={len(xs):>3}  {label} {100 * sum(b for b, _ in xs) / len(xs):5.1f}% vs "
            f"{100 * sum(a for _, a in xs) / len(xs):5.1f}%  diff {100 * sum(diffs) / len(diffs):+5.1f} pts  "
            f"paired 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        )


def held_out_sets(files: list[str], limit: int) -> list[tuple[str, str, list]]:
    from spell.data.qa import load_labelled_qa
    from spell.eval.benchmarks import EvalItem
    from spell.vocab import DOCMATH

    sets = []
    for f in files:
        if not Path(f).is_file():
            print(f"skipping {f}: not found (the shared data folder is absent on this machine)")
            continue
        qa = load_labelled_qa(f, limit=limit)
        bench = "docmath" if qa and qa[0].task == DOCMATH else "hotpotqa"
        items = [EvalItem(x.qa_id, bench, "\n".join(x.documents), x.question, None, x.golds) for x in qa]
        sets.append((Path(f).stem, bench, items))
    return sets


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "    -"
    return f"{100 * v:5.1f}" if pct else f"{v:5.0f}"


def print_iterations(rows: list[dict]) -> None:
    from storage.learning import trend

    print(
        "iter  questions  valid%  good%  answers  rule_acc%  reward_acc%  decisive  verifier_agree%  "
        "verifier_yes%  guard_rejects"
    )
    for r in rows:
        print(
            f"{r['iteration']:>4}  {r['questions']:>9}  {_fmt(r['valid_share'])}  {_fmt(r['good_share'])}  "
            f"{r['answers']:>7}  {_fmt(r['rule_accuracy']):>9}  {_fmt(r['reward_accuracy']):>11}  "
            f"{r['decisive']:>8}  {_fmt(r['verifier_agreement']):>15}  {_fmt(r['verifier_yes_rate']):>13}  "
            f"{r['guard_rejects']:>13}"
        )
    xs = [r["iteration"] for r in rows]
    for key in TRENDS:
        t = trend(xs, [r[key] for r in rows])
        if t is None:
            print(f"trend {key}: fewer than 3 iterations with a value")
            continue
        est, lo, hi = t
        verdict = "rises" if lo > 0 else "falls" if hi < 0 else "no trend beyond noise"
        print(
            f"trend {key:<19} change over run {100 * est:+6.1f} pts  95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            f"  ({verdict})"
        )
    ys = [(r["verifier_agreement"], r["decisive"]) for r in rows if r["verifier_agreement"] is not None]
    if ys:
        total = sum(n for _, n in ys)
        pooled = sum(a * n for a, n in ys) / total if total else float("nan")
        print(f"verifier agreement with decisive rule checks, pooled: {100 * pooled:.1f}% of {total} answers")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--runs-dir", default=None, help="where the run goes (default: a new temporary folder)")
    ap.add_argument("--run", default=None, help="run name (default: learning, or learning-format)")
    ap.add_argument("--format-only", action="store_true", help="the control: format rewards only")
    ap.add_argument("--qa", nargs="*", default=[str(p) for p in DEFAULT_QA], help="held-out labelled QA files")
    ap.add_argument("--limit", type=int, default=30, help="held-out questions per QA file")
    ap.add_argument("--samples", type=int, default=2, help="held-out samples per question")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    ap.add_argument("--set", action="append", default=[], help="extra key=value config overrides")
    args = ap.parse_args()
    from _common import machine

    from flows.iteration import spell_iteration
    from spell.config import load_config
    from spell.engine.models.loading import resolve_model_path
    from storage.layout import RunLayout
    from storage.learning import learning_rows
    from storage.views import open_history

    runs = args.runs_dir or tempfile.mkdtemp(prefix="spell-learning-")
    run = args.run or ("learning-format" if args.format_only else "learning")
    ov = [f"run.runs_dir={runs}", f"eval.n_samples={args.samples}", "eval.pass_k=[1]", *args.set]
    if args.format_only:
        ov.append("reward.format_only=true")
    cfg = load_config(args.config, ov)
    start = resolve_model_path(cfg.model.path, str(Path(runs) / ".models"))
    sets = [] if args.no_eval else held_out_sets(args.qa, args.limit)
    key = {
        "config": args.config,
        "qa": [Path(q).name for q in args.qa],
        "limit": args.limit,
        "samples": args.samples,
        "set": args.set,
    }
    before = evaluate_cached(start, cfg, sets, Path(runs) / "eval_base.json", key) if sets else {}
    layout = RunLayout(runs, run)
    walls = []
    for k in range(1, args.iterations + 1):
        if (layout.root / "checkpoints" / f"iter_{k:04d}" / "model").is_dir():
            continue  # done before a kill: resume after it
        t = time.perf_counter()
        out = spell_iteration(run=run, config=args.config, iteration=k, overrides=[*ov, f"model.path={start}"])
        if not isinstance(out, dict):
            sys.exit(f"iteration {k} failed: {out}")
        walls.append(time.perf_counter() - t)
    rows = learning_rows(open_history(runs, run))

    print(f"machine: {machine()}")
    print(f"config: {args.config} {' '.join(ov[3:])}; run {runs}/{run}; {args.iterations} iterations from {start}")
    if walls:
        print(
            f"{len(walls)} iterations run by this process: {sum(walls) / 60:.1f} min, {sum(walls) / len(walls):.1f} s "
            f"an iteration (the first includes Ray and the policy actor's start)"
        )
    print_iterations(rows)
    if not sets:
        return
    final = layout.root / "checkpoints" / f"iter_{args.iterations:04d}" / "model"
    after = evaluate_cached(str(final), cfg, sets, layout.root / "eval_after.json", key)
    print(f"held out ({args.samples} samples per question, seed {cfg.run.seed}):")
    print_paired("before vs after", before, after)
    other_arm = "learning" if args.format_only else "learning-format"
    other = cached_scores(Path(runs) / other_arm / "eval_after.json", key) if args.run is None else None
    if other is not None:
        spell_after, control_after = (other, after) if args.format_only else (after, other)
        print("SPELL after vs format-only after (the difference in differences: both start from the same base):")
        print_paired("format-only vs SPELL", control_after, spell_after)


if __name__ == "__main__":
    main()
