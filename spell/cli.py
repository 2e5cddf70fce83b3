"""The `spell` command line.

spell run --config configs/cpu-smoke.yaml --iterations 2      # self-play iterations (Prefect flows)
spell run --config configs/cpu-smoke.yaml --run smoke --resume
spell history --runs-dir runs "SELECT role, avg(reward) FROM rewards GROUP BY role"
spell replay --run smoke --iter 1 --from reward --set questioner.sigma=0.25
spell deploy --config configs/cpu-smoke.yaml                   # serve spell-iteration/local etc.
spell ui mlflow                                                # the MLflow UI over runs/mlflow.db
spell config show --config configs/cpu-smoke.yaml
spell plan --config configs/paper-qwen2.5-7b-8gpu.yaml --gpus 8 --gpu-memory 80   # memory budget
"""

from __future__ import annotations

import argparse
import sys

from spell.commands import (
    cmd_config,
    cmd_corpus,
    cmd_deploy,
    cmd_eval,
    cmd_export,
    cmd_history,
    cmd_model,
    cmd_plan,
    cmd_replay,
    cmd_report,
    cmd_run,
    cmd_ui,
)
from spell.errors import SpellError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spell", description="SPELL self-play RL for long-context LLMs")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run self-play iterations (each a spell-iteration Prefect flow)")
    r.add_argument("--config", default="configs/cpu-smoke.yaml")
    r.add_argument("--run", default=None, help="run name (default: run.name of the config)")
    r.add_argument("--iterations", type=int, default=1)
    r.add_argument("--resume", action="store_true", help="continue an existing run where it stopped")
    r.add_argument("--runs-dir", default=None, help="where runs live (default: run.runs_dir of the config)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    r.set_defaults(fn=cmd_run)

    h = sub.add_parser("history", help="query every run's artifacts with DuckDB")
    h.add_argument("sql", nargs="?", default=None)
    h.add_argument("--runs-dir", default="runs")
    h.add_argument("--run", default=None)
    h.add_argument("--limit", type=int, default=40)
    h.set_defaults(fn=cmd_history)

    rp = sub.add_parser("replay", help="re-run an iteration from a stage into a new branch directory")
    rp.add_argument("--run", required=True)
    rp.add_argument("--iter", type=int, required=True)
    rp.add_argument("--from", dest="from_stage", default="reward")
    rp.add_argument("--runs-dir", default="runs")
    rp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rp.set_defaults(fn=cmd_replay)

    e = sub.add_parser("eval", help="evaluate a model on the long-context benchmarks (spell-eval flow)")
    e.add_argument("--config", default="configs/eval-16k.yaml")
    e.add_argument("--model", required=True, help="Hugging Face model folder (or tiny:qwen2)")
    e.add_argument("--tasks", nargs="*", default=[], help="benchmarks (default: eval.benchmarks)")
    e.add_argument("--name", default=None, help="results go to <runs dir>/<name>/eval/")
    e.add_argument("--runs-dir", default=None, help="where results go (default: run.runs_dir of the config)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    e.set_defaults(fn=cmd_eval)

    d = sub.add_parser(
        "deploy",
        help="serve spell-iteration/local, spell-train/local, spell-replay/local and spell-eval/local on the "
        "Prefect server of PREFECT_API_URL (default config: configs/cpu-smoke.yaml, runs dir: runs)",
    )
    d.add_argument("--config", default="configs/cpu-smoke.yaml", help="the preset every deployment run uses")
    d.add_argument("--runs-dir", default="runs")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    d.set_defaults(fn=cmd_deploy)

    u = sub.add_parser("ui", help="open a UI over the runs: mlflow (needs the full mlflow package)")
    u.add_argument("which", choices=["mlflow"])
    u.add_argument("--runs-dir", default="runs")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)

    ex = sub.add_parser("export", help="a checkpoint (sharded or not) -> one Hugging Face safetensors folder")
    ex.add_argument("checkpoint", help="runs/<run>/checkpoints/iter_<k>")
    ex.add_argument("--out", required=True)
    ex.set_defaults(fn=cmd_export)

    rep = sub.add_parser("report", help="curves per iteration of a run (PNG + HTML)")
    rep.add_argument("--run", required=True)
    rep.add_argument("--runs-dir", default="runs")
    rep.set_defaults(fn=cmd_report)

    pl = sub.add_parser("plan", help="per-GPU memory budget of a config's layout; refuses one that does not fit")
    pl.add_argument("--config", default="configs/default.yaml")
    pl.add_argument("--gpus", type=int, default=None, help="GPUs in the cluster (default: this machine's)")
    pl.add_argument("--gpu-memory", type=float, default=None, help="GiB per GPU (default: this machine's)")
    pl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pl.set_defaults(fn=cmd_plan)

    c = sub.add_parser("config", help="show the resolved config or every key's help")
    c.add_argument("action", choices=["show", "help"])
    c.add_argument("--config", default=None)
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    c.set_defaults(fn=cmd_config)

    cb = sub.add_parser("corpus", help="build document clusters from a raw corpus")
    cb.add_argument("action", choices=["build"])
    cb.add_argument("--input", required=True, help="builtin:wiki, a .jsonl/.parquet with `text`, or a folder of .txt")
    cb.add_argument("--out", required=True)
    cb.add_argument("--target-size", type=int, default=8)
    cb.add_argument("--min-size", type=int, default=5)
    cb.add_argument("--max-docs", type=int, default=0)
    cb.add_argument("--min-chars", type=int, default=100)
    cb.add_argument("--max-chars", type=int, default=32768)
    cb.add_argument("--embedding-model", default="minilm")
    cb.add_argument("--decontaminate", nargs="*", default=[], help="benchmark / QA files to decontaminate against")
    cb.add_argument("--threshold", type=float, default=0.8, help="n-gram Jaccard threshold for decontamination")
    cb.add_argument("--seed", type=int, default=0)
    cb.set_defaults(fn=cmd_corpus)

    m = sub.add_parser("model", help="prepare a packaged model (smollm2) or build a tiny random one")
    m.add_argument("action", choices=["prepare", "tiny"])
    m.add_argument("name", help="prepare: smollm2; tiny: the output folder")
    m.add_argument("--cache-dir", default="runs/.models", help="where prepared models are kept")
    m.add_argument("--arch", default="qwen2", choices=["qwen2", "llama"])
    m.set_defaults(fn=cmd_model)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except SpellError as exc:  # the user's to fix: one line, no traceback
        print(f"spell: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
