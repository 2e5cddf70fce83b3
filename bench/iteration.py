"""The default preset's iteration wall time per stage, with `engine.shared_prefix` off and on.

    python bench/iteration.py                      # configs/default.yaml, 2 iterations per setting
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


def child(config: str, iterations: int, shared: bool, sets: list[str]) -> None:
    """One setting: `iterations` iterations of one run in this process; prints one JSON line per iteration."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.iteration import spell_iteration

    runs = tempfile.mkdtemp(prefix="spell-bench-iter-")
    ov = [f"run.runs_dir={runs}", f"engine.shared_prefix={str(shared).lower()}", *sets]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides for both settings")
    ap.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.config, args.iterations, args.child == "on", args.set)
        return
    from _common import machine

    results: dict[str, list[dict]] = {}
    for setting in ("off", "on"):
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
            sys.exit(f"bench/iteration.py: shared_prefix={setting} failed:\n{proc.stderr[-3000:]}")
        results[setting] = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
        results[setting][-1]["process"] = time.perf_counter() - t
    print(f"machine: {machine()}")
    print(f"config: {args.config} {' '.join(args.set)}  ({args.iterations} iteration(s) per setting)")
    print(f"{'stage seconds':>28} " + " ".join(f"{s[:8]:>9}" for s in STAGES) + "      wall  overhead")
    for setting, rows in results.items():
        for r in rows:
            t = r["timings"]
            share = 100 * max(0.0, 1 - r["busy"] / r["wall"]) if r["wall"] else 0.0
            print(
                f"shared_prefix={setting:>3} iter {r['iteration']}:".rjust(28)
                + " "
                + " ".join(f"{t.get(s, 0.0):9.1f}" for s in STAGES)
                + f" {r['wall']:9.1f} {share:8.1f}%"
            )
        tok = sum(r["train_tokens"] for r in rows)
        comp = sum(r["computed_tokens"] for r in rows)
        seq = sum(r["sequence_tokens"] for r in rows)
        print(
            f"{'':>28} GRPO: {tok:.0f} response tokens, {seq:.0f} sequence tokens, {comp:.0f} computed; "
            f"process wall {rows[-1]['process']:.0f}s"
        )
    for stage in ("respond", "verify", "grpo_step"):
        off = sum(r["timings"].get(stage, 0.0) for r in results["off"])
        on = sum(r["timings"].get(stage, 0.0) for r in results["on"])
        print(f"{stage}: off {off:.1f}s, on {on:.1f}s, speed-up {off / on if on else float('nan'):.2f}x")
    off = sum(r["wall"] for r in results["off"]) / len(results["off"])
    on = sum(r["wall"] for r in results["on"]) / len(results["on"])
    print(f"mean iteration wall: off {off:.1f}s, on {on:.1f}s   (target <= 60s on 2 cores)")


if __name__ == "__main__":
    main()
