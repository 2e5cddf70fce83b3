"""The default preset's iteration wall time per stage under two settings (`engine.shared_prefix` off and on
unless `--arms` names others).

    python bench/iteration.py                      # configs/default.yaml, 2 iterations per setting
    python bench/iteration.py --arms engine.prefill_dtype=model engine.prefill_dtype=bfloat16   # issue 26
    python bench/iteration.py --arms engine.prefill_dtype=model \
        "engine.prefill_dtype=bfloat16 engine.decode_dtype=bfloat16"     # an arm of several overrides
    python bench/iteration.py --config configs/cpu-smoke.yaml --iterations 1   # seconds, scripted model

Each setting runs in its own process (its own Ray and policy actor, as `spell run` does), on the same
seeds, so both do the same amount of work up to sampling differences: the printout gives the tokens each
did beside the seconds. Iteration 1 includes Ray and actor start-up (the model is prepared and the corpus
clustered before the clock starts, as `make run` does once); the overhead share is the part of an
iteration's wall time outside the actor's generation and training (Prefect, storage, orchestration).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

STAGES = ("sample_docs", "question", "respond", "verify", "reward", "select_batch", "grpo_step", "checkpoint")


def warm_caches(config: str, overrides: list[str]) -> None:
    """Prepare the model and cluster the corpus into the bench's runs dir (what `make run` does once)."""
    from pathlib import Path

    from spell.config import load_config
    from spell.data.corpus import load_corpus
    from spell.engine.models.loading import resolve_model_path

    cfg = load_config(config, overrides)
    resolve_model_path(cfg.model.path, str(Path(cfg.run.runs_dir) / ".models"))
    load_corpus(cfg.data.corpus, seed=cfg.run.seed, cache_dir=Path(cfg.run.runs_dir) / ".corpus")


def child(config: str, iterations: int, arm: str, sets: list[str]) -> None:
    """One setting (`arm`, key=value overrides separated by spaces): `iterations` iterations of one run in
    this process; prints one JSON line per iteration."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.iteration import spell_iteration

    runs = tempfile.mkdtemp(prefix="spell-bench-iter-")
    ov = [f"run.runs_dir={runs}", *arm.split(), *sets]
    try:
        warm_caches(config, ov)
        t0 = time.perf_counter()  # one-time model preparation and corpus clustering are not an iteration's work
        for k in range(1, iterations + 1):
            t = time.perf_counter()
            out = spell_iteration(run="bench", config=config, overrides=ov, iteration=k)
            m = out["metrics"]
            row = {
                "iteration": k,
                "wall": time.perf_counter() - t,
                "since_start": time.perf_counter() - t0,
                "busy": m.get("seconds/generate_and_train", 0.0),
                "timings": out["timings"],
                "rounds": out["rounds"],
                "train_tokens": m.get("train/tokens", 0.0),
                "computed_tokens": m.get("train/computed_tokens", 0.0),
                "sequence_tokens": m.get("train/sequence_tokens", 0.0),
            }
            print("ROW " + json.dumps(row), flush=True)
    finally:
        shutil.rmtree(runs, ignore_errors=True)  # about 1 GB of checkpoints per run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides for both settings")
    ap.add_argument(
        "--arms",
        nargs=2,
        default=["engine.shared_prefix=false", "engine.shared_prefix=true"],
        help="the two settings compared, each key=value overrides separated by spaces (the first is the reference)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.config, args.iterations, args.child, args.set)
        return
    from _common import machine

    results: dict[str, list[dict]] = {}
    for setting in args.arms:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            setting,
            "--config",
            args.config,
            "--iterations",
            str(args.iterations),
        ]
        cmd += [x for s in args.set for x in ("--set", s)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"bench/iteration.py: {setting} failed:\n{proc.stderr[-3000:]}")
        results[setting] = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
        results[setting][-1]["process"] = time.perf_counter() - t
    print(f"machine: {machine()}")
    print(f"config: {args.config} {' '.join(args.set)}  ({args.iterations} iteration(s) per setting)")
    width = max(28, *(len(a) + 9 for a in args.arms))
    print(f"{'stage seconds':>{width}} " + " ".join(f"{s[:8]:>9}" for s in STAGES) + "      wall  overhead")
    for setting, rows in results.items():
        for r in rows:
            t = r["timings"]
            share = 100 * max(0.0, 1 - r["busy"] / r["wall"]) if r["wall"] else 0.0
            print(
                f"{setting} iter {r['iteration']}:".rjust(width)
                + " "
                + " ".join(f"{t.get(s, 0.0):9.1f}" for s in STAGES)
                + f" {r['wall']:9.1f} {share:8.1f}%"
            )
        tok = sum(r["train_tokens"] for r in rows)
        comp = sum(r["computed_tokens"] for r in rows)
        seq = sum(r["sequence_tokens"] for r in rows)
        print(
            f"{'':>{width}} GRPO: {tok:.0f} response tokens, {seq:.0f} sequence tokens, {comp:.0f} computed; "
            f"process wall {rows[-1]['process']:.0f}s"
        )
    ref, new = (results[a] for a in args.arms)
    for stage in ("question", "respond", "verify", "grpo_step"):
        a = sum(r["timings"].get(stage, 0.0) for r in ref)
        b = sum(r["timings"].get(stage, 0.0) for r in new)
        ratio = a / b if b else float("nan")
        print(f"{stage}: {args.arms[0]} {a:.1f}s, {args.arms[1]} {b:.1f}s, speed-up {ratio:.2f}x")
    a = sum(r["wall"] for r in ref) / len(ref)
    b = sum(r["wall"] for r in new) / len(new)
    print(f"mean iteration wall: {args.arms[0]} {a:.1f}s, {args.arms[1]} {b:.1f}s: {a / b if b else float('nan'):.2f}x"
          "   (target <= 100 s on 2 cores)")  # fmt: skip


if __name__ == "__main__":
    main()
