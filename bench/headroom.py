"""Step 0 of the learning ladder (issue 25): is there anything for GRPO to sharpen? Greedy and 8 samples at
T=1 of the base model on short-context held-out questions (`spell.data.heldout`), scored by cover-EM and
token F1: pass@1 against pass@8, with 95% CIs over questions. If pass@8 - pass@1 is under 10 points, GRPO on
this model has little to sharpen; the script says so. The base model's outputs are cached as JSONL, so the
later rungs compare against the same "before".

    .venv/bin/python bench/headroom.py --per-set 60                 # 180 questions, ~20 min on 2 cores
    .venv/bin/python bench/headroom.py --per-set 60 --config configs/default.yaml --out runs/headroom
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% bootstrap CI over questions (each value is one question's)."""
    from storage.learning import paired_ci

    return (sum(values) / len(values), *paired_ci(values))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--per-set", type=int, default=60, help="questions per held-out set (the first ones)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--out", default="runs/headroom")
    args = ap.parse_args()

    from spell.config import load_config
    from spell.data.heldout import held_out
    from spell.engine.policy import Policy, PolicySpec
    from spell.eval.benchmarks import EvalItem
    from spell.eval.runner import run_benchmark

    sets = held_out(args.data)
    if not sets:
        print(f"no held-out data under {args.data} (the shared data folder is absent on this machine): nothing run")
        return 0
    cfg = load_config(args.config)
    policy = Policy(PolicySpec.from_config(cfg, train=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    modes = {
        "greedy": cfg.eval.model_copy(
            update={"n_samples": 1, "temperature": 0.0, "max_new_tokens": args.max_new_tokens, "pass_k": [1]}
        ),
        "sampled": cfg.eval.model_copy(
            update={
                "n_samples": args.samples,
                "temperature": 1.0,
                "top_p": 1.0,
                "max_new_tokens": args.max_new_tokens,
                "pass_k": [1, args.samples],
            }
        ),
    }
    pooled: dict[str, list[float]] = {}
    print(f"model {cfg.model.path}, {args.samples} samples at T=1 + greedy, up to {args.max_new_tokens} new tokens")
    print(f"{'set':<20}{'n':>5}  {'metric':<7}{'greedy':>8}{'pass@1':>8}{'pass@8':>8}  pass@8-pass@1 [95% CI]  "
          f"{'words':>6}{'parsed':>7}")  # fmt: skip
    for name, qa in sets.items():
        qa = qa[: args.per_set]
        items = [EvalItem(x.qa_id, "hotpotqa", "\n".join(x.documents), x.question, None, x.golds) for x in qa]
        res = {
            mode: run_benchmark(
                "hotpotqa",
                items,
                ec,
                policy.render,
                policy.rollout,
                None,
                seed=cfg.run.seed,
                prefill=cfg.rollout.prefills("responder"),
            )
            for mode, ec in modes.items()
        }
        with open(out / f"base_{name}.jsonl", "w") as fh:
            for mode, r in res.items():
                for s in r.samples:
                    fh.write(json.dumps({"mode": mode, **{k: s[k] for k in ("item_id", "sample", "text", "prediction",
                                                                            "rule", "f1")}}) + "\n")  # fmt: skip
        for metric in ("rule", "f1"):
            by_q: dict[str, list[float]] = {}
            for s in res["sampled"].samples:
                by_q.setdefault(s["item_id"], []).append(float(s[metric]))
            greedy = {s["item_id"]: float(s[metric]) for s in res["greedy"].samples}
            p1 = [sum(v) / len(v) for v in by_q.values()]
            p8 = [max(v) for v in by_q.values()]
            gap = [b - a for a, b in zip(p1, p8, strict=True)]
            pooled.setdefault(f"{metric}_gap", []).extend(gap)
            pooled.setdefault(f"{metric}_p1", []).extend(p1)
            pooled.setdefault(f"{metric}_p8", []).extend(p8)
            pooled.setdefault(f"{metric}_greedy", []).extend(greedy[q] for q in by_q)
            est, lo, hi = _mean_ci(gap)
            words = [len((s["prediction"] or "").split()) for s in res["sampled"].samples]
            parsed = [s["prediction"] is not None for s in res["sampled"].samples]
            label = "cem" if metric == "rule" else "f1"
            print(f"{name:<20}{len(by_q):>5}  {label:<7}{100 * sum(greedy.values()) / len(greedy):>8.1f}"
                  f"{100 * sum(p1) / len(p1):>8.1f}{100 * sum(p8) / len(p8):>8.1f}  "
                  f"{100 * est:+6.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]      "
                  f"{sum(words) / len(words):>6.1f}{100 * sum(parsed) / len(parsed):>6.0f}%")  # fmt: skip
    for label, metric in (("cem", "rule"), ("f1", "f1")):
        est, lo, hi = _mean_ci(pooled[f"{metric}_gap"])
        n = len(pooled[f"{metric}_gap"])
        g, p1, p8 = (100 * sum(pooled[f"{metric}_{k}"]) / n for k in ("greedy", "p1", "p8"))
        verdict = "room for GRPO to sharpen" if 100 * lo >= 10 else "under 10 points: little for GRPO to sharpen"
        print(f"{'pooled':<20}{n:>5}  {label:<7}{g:>8.1f}{p1:>8.1f}{p8:>8.1f}  {100 * est:+6.1f} "
              f"[{100 * lo:+.1f}, {100 * hi:+.1f}]  {verdict}")  # fmt: skip
    print(f"base outputs cached in {out}/base_<set>.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
