"""Rung B of the learning ladder (issue 25): SPELL on a task this model can read, against a control that
matches it. `configs/short-extractive.yaml` (general QA, two documents a visit, span answers, G=8) self-plays
on the supporting paragraphs of rung A's training pool (labels unused: clusters of one source's paragraphs),
against the same preset, seed and data under `reward.format_only`. Reported per arm:

- questioner: per-iteration shares of valid (parsed, guard-passed, grounded) and frontier (0 < responder
  accuracy < 1) proposals, from the run's DuckDB views (`storage.learning`);
- responder: held-out greedy token F1 and cover-EM, before and after (rung A's held-out questions);
- verifier: balanced accuracy on a labelled judge set built from the held-out questions
  (`spell.eval.judge_set`: always-YES, always-NO and string equality each score 50%), majority of its votes.

Changes are paired 95% bootstrap CIs over questions; SPELL minus control is the difference in differences.

    .venv/bin/python bench/ladder_spell.py --iterations 8 --out runs/ladder_b        # ~1 hour on 2 cores
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ladder_rlvr import evaluate, ladder_args, prepare, train_arm

ARMS = {"spell": [], "format": ["reward.format_only=true"]}


def pool_corpus(pool: list, path: Path) -> int:
    """Clusters of the pool's paragraphs, one per source question (its steps' paragraphs together)."""
    from spell.vocab import GENERAL_QA

    clusters: dict[str, list[str]] = {}
    for x in pool:
        docs = clusters.setdefault(x.qa_id.split("-s")[0], [])
        docs += [d for d in x.documents if d not in docs]
    rows = [{"cluster_id": k, "task": GENERAL_QA, "documents": v} for k, v in clusters.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def judge(model_path: str, cfg, items: list, cache: Path) -> dict[str, int | None]:
    """The verifier's majority verdict (1, 0, or None without a majority) per judge-set item, cached."""
    if cache.is_file():
        return json.loads(cache.read_text())
    from spell.engine.policy import Policy, PolicySpec
    from spell.roles import prompts, verifier

    policy = Policy(PolicySpec.from_config(cfg, model_path=model_path, train=False))
    n = cfg.verifier.votes
    params = {"n": n, "temperature": cfg.rollout.temperature, "top_p": cfg.rollout.top_p, "max_new_tokens": 6,
              "seed": cfg.run.seed}  # fmt: skip
    out: dict[str, int | None] = {}
    for i in range(0, len(items), 16):
        part = items[i : i + 16]
        ps = [verifier.build_prompt(x.question, x.candidate, x.reference) for x in part]
        ro = policy.rollout(ps, {**params, "seed": cfg.run.seed + i}, None, [prompts.PREFILL_VERIFIER] * len(ps))
        for x, r in zip(part, ro, strict=True):
            votes = [verifier.parse_vote(c["text"]) for c in r["completions"]]
            out[x.item_id] = 1 if votes.count(1) * 2 > n else 0 if votes.count(0) * 2 > n else None
    del policy
    cache.write_text(json.dumps(out))
    return out


def _row(label: str, before: list[float], arms: dict[str, list[float]], scale: float = 100) -> str:
    from storage.learning import paired_ci

    def ci(xs: list[float], ys: list[float]) -> str:
        d = [scale * (a - b) for a, b in zip(xs, ys, strict=True)]
        lo, hi = paired_ci(d)
        return f"{sum(d) / len(d):+6.1f} [{lo:+.1f}, {hi:+.1f}]"

    s, f = arms["spell"], arms["format"]
    means = " ".join(f"{scale * sum(v) / len(v):6.1f}" for v in (before, s, f))
    return f"{label:<20} n={len(before):>3} {means}   {ci(s, before):<22}{ci(f, before):<22}{ci(s, f)}"


def main() -> int:
    args = ladder_args(__doc__ or "", "configs/short-extractive.yaml", 8, 80, "runs/ladder_b")
    from _common import machine

    from spell.config import load_config
    from spell.engine.models.loading import resolve_model_path
    from spell.eval.judge_set import build_judge_set
    from storage.learning import learning_rows
    from storage.views import open_history

    if (ready := prepare(args)) is None:
        return 0
    held, pool, out = ready
    n_clusters = pool_corpus(pool, out / "corpus.jsonl")
    items = build_judge_set([x for qa in held.values() for x in qa], seed=0)
    cfg = load_config(args.config, [f"run.runs_dir={out / 'runs'}", *args.set])
    start = resolve_model_path(cfg.model.path, str(out / ".models"))
    corpus = out / "corpus.jsonl"
    models = {"base": start} | {
        arm: train_arm(arm, args.config, out, args.iterations, [f"data.corpus={corpus}", f"model.path={start}",
                                                                 *extra, *args.set])
        for arm, extra in ARMS.items()
    }  # fmt: skip
    answers = {k: evaluate(m, cfg, held, out / f"eval_{k}.json") for k, m in models.items()}
    verdicts = {k: judge(m, cfg, items, out / f"judge_{k}.json") for k, m in models.items()}

    print(f"machine: {machine()}")
    print(f"config {args.config} {' '.join(args.set)}; {args.iterations} iterations per arm; corpus {n_clusters} "
          f"clusters of the training pool's paragraphs; held out {sum(len(v) for v in held.values())}; judge set "
          f"{len(items)} triples")  # fmt: skip
    for arm in ARMS:
        rows = learning_rows(open_history(str(out / "runs"), arm))
        shares = "  ".join(
            f"i{r['iteration']}: valid {100 * (r['valid_share'] or 0):.0f}% good {100 * (r['good_share'] or 0):.0f}%"
            for r in rows
        )
        print(f"  {arm:<6} questioner per iteration: {shares}")
    print(f"{'':<26}{'base':>6} {'spell':>6} {'format':>6}   {'spell-base':<22}{'format-base':<22}spell-format")
    ids = sorted(answers["base"]["f1"])
    for metric in ("f1", "cem"):
        print(_row(f"responder {metric}", [answers["base"][metric][i] for i in ids],
                   {a: [answers[a][metric][i] for i in ids] for a in ARMS}))  # fmt: skip
    qids = sorted({x.item_id.rsplit(":", 1)[0] for x in items})
    labels = {x.item_id: x.label for x in items}

    def per_question(v: dict[str, int | None]) -> list[float]:
        return [sum(v[f"{q}:{s}"] == labels[f"{q}:{s}"] for s in ("pos", "neg")) / 2 for q in qids]

    print(_row("verifier bal. acc.", per_question(verdicts["base"]), {a: per_question(verdicts[a]) for a in ARMS}))
    for k, v in verdicts.items():
        yes, none = (sum(1 for x in v.values() if x == want) / len(v) for want in (1, None))
        print(f"  {k:<6} verifier YES rate {100 * yes:.0f}%, no majority {100 * none:.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
