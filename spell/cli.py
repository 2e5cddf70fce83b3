"""The `spell` command line.

spell run --config configs/cpu-smoke.yaml --iterations 2      # self-play iterations (Prefect flows)
spell run --config configs/cpu-smoke.yaml --run smoke --resume
spell history --runs-dir runs "SELECT role, avg(reward) FROM rewards GROUP BY role"
spell replay --run smoke --iter 1 --from reward --set questioner.sigma=0.25
spell deploy                                                   # serve spell-iteration/local etc.
spell config show --config configs/cpu-smoke.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def _quiet_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _print_summary(result: dict[str, Any]) -> None:
    m, t = result["metrics"], result["timings"]
    branch = f" ({result['branch']})" if result["branch"] else ""
    print(
        f"\n== {result['run']} iteration {result['iteration']}{branch}: {result['rounds']} round(s), "
        f"{result['usable_groups']} usable responder groups"
    )
    print(f"   {'role':<11}{'mean reward':>12}{'samples':>9}{'in batch':>9}")
    for role in ("questioner", "responder", "verifier"):
        mean = m.get(f"reward/{role}/mean")
        n = sum(v for k, v in m.items() if k.startswith(f"reward/{role}/") and k.endswith("/n"))
        print(
            f"   {role:<11}{'' if mean is None else f'{mean:12.3f}':>12}{int(n):>9}"
            f"{int(m.get(f'batch/{role}/n', 0)):>9}"
        )
    acc = {k.split("/")[1]: v for k, v in m.items() if k.startswith("responder/") and k.endswith("/accuracy")}
    if acc:
        print("   responder accuracy: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(acc.items())))
    print(
        f"   questioner parse rate {m.get('questioner/parse_rate', 0):.2f}; cases: "
        + ", ".join(f"{k.split('/')[-2]} {int(v)}" for k, v in sorted(m.items()) if k.startswith("questioner/case/"))
    )
    if result.get("note"):
        print(f"   NOTE: {result['note']}")
    print("   seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    if "overhead/share" in m:
        print(
            f"   wall {m['seconds/wall']:.1f}s, generation+training {m['seconds/generate_and_train']:.1f}s, "
            f"overhead share {100 * m['overhead/share']:.1f}%"
        )
    nan = float("nan")
    print(
        f"   train: loss {m.get('train/loss', nan):.4f}, grad norm {m.get('train/grad_norm', nan):.3f}, "
        f"tokens {int(m.get('train/tokens', 0))}"
    )


def cmd_run(args: argparse.Namespace) -> int:
    _quiet_env()
    from flows.iteration import resolve, spell_iteration
    from storage.layout import RunLayout

    cfg = resolve(args.config, args.set, args.run)
    layout = RunLayout(cfg.run.runs_dir, cfg.run.name)
    layout.check_writable()
    layout.check_free_space(cfg.run.min_free_disk_gb)
    if layout.iterations() and not args.resume:
        print(
            f"run '{layout.run}' already has iterations in {layout.root}; add --resume to continue it, "
            "or pick another --run",
            file=sys.stderr,
        )
        return 2
    overrides = [f"run.runs_dir={cfg.run.runs_dir}", *(args.set or [])]
    start = layout.next_iteration()
    for k in range(start, start + args.iterations):
        result = spell_iteration(run=cfg.run.name, config=args.config, iteration=k, overrides=overrides)
        _print_summary(result)
    runs = cfg.run.runs_dir
    ckpt = layout.checkpoints / f"iter_{start + args.iterations - 1:04d}" / "model"
    print(f"\nartifacts:   {layout.root}  (Parquet per stage under iter_*/)")
    print(f"checkpoints: {layout.checkpoints}")
    if cfg.tracking.mlflow:
        uri = cfg.tracking.mlflow_uri or "sqlite:///" + str(layout.runs_dir / "mlflow.db")
        print(f"mlflow:      {uri}  (run '{layout.run}'; view with: mlflow ui --backend-store-uri {uri})")
    views = "prompts, questions, responses, verdicts, rewards, batch, train_metrics, rejects"
    print(f"duckdb:      views {views} over {runs}/")
    print("next:")
    query = "SELECT iteration, role, avg(reward) FROM rewards GROUP BY ALL ORDER BY ALL"
    print(f'  spell history --runs-dir {runs} "{query}"')
    print(f"  spell report --runs-dir {runs} --run {layout.run}")
    print(f"  spell run --config {args.config} --run {layout.run} --resume --iterations 1")
    print(f"  spell eval --model {ckpt} --set eval.data_dir=<benchmark files>")
    print(
        "  prefect server start --host 127.0.0.1 & spell deploy   # then: prefect deployment run spell-iteration/local"
    )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from storage.views import VIEWS, open_history

    con = open_history(args.runs_dir, args.run)
    if args.sql:
        rel = con.sql(args.sql)
        if rel is not None:
            rel.show(max_width=200, max_rows=args.limit)
        return 0
    print(f"views over {Path(args.runs_dir).resolve()} (each has run, iteration, branch columns):")
    for v in VIEWS:
        n = con.execute(f"SELECT count(*) FROM {v}").fetchone()[0]
        print(f"  {v:<14}{n:>8} rows")
    print('example: spell history "SELECT iteration, role, avg(reward) FROM rewards GROUP BY ALL ORDER BY ALL"')
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    _quiet_env()
    from flows.iteration import spell_replay

    result = spell_replay(
        run=args.run, iteration=args.iter, from_stage=args.from_stage, runs_dir=args.runs_dir, overrides=args.set
    )
    _print_summary(result)
    print(f"\nreplay written to {result['dir']} (the original iteration is untouched)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    _quiet_env()
    from flows.eval import spell_eval

    result = spell_eval(
        model=args.model, config=args.config, benchmarks=args.tasks or None, name=args.name, overrides=args.set
    )
    print(result["table"])
    print(f"\nper-sample, per-question and per-benchmark Parquet + report.md in {result['dir']}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    _quiet_env()
    from flows.deploy import serve_all

    serve_all(config=args.config, runs_dir=args.runs_dir)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """spell export runs/<run>/checkpoints/iter_0010 --out my-model/   (a Hugging Face safetensors folder)"""
    import shutil

    from spell.engine.fsdp import export_checkpoint

    ckpt = Path(args.checkpoint)
    if (ckpt / "sharded" / ".metadata").is_file():
        out = export_checkpoint(ckpt, args.out)
        print(f"exported the sharded checkpoint {ckpt} to {out}")
    elif (ckpt / "model" / "config.json").is_file():
        shutil.copytree(ckpt / "model", args.out, dirs_exist_ok=True)
        print(f"{ckpt}/model is already a Hugging Face folder; copied to {args.out}")
    else:
        print(f"spell: {ckpt} is not a spell checkpoint (no model/ or sharded/)", file=sys.stderr)
        return 2
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from storage.report import build_report

    png, html = build_report(args.runs_dir, args.run)
    print(f"report: {png}\n        {html}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from spell.config import describe_config, dump_config, load_config

    if args.action == "help":
        print(describe_config())
    else:
        print(dump_config(load_config(args.config, args.set)), end="")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from spell.corpus_build import BuildSettings, build_corpus

    s = BuildSettings(
        target_size=args.target_size,
        min_size=args.min_size,
        max_docs=args.max_docs,
        min_chars=args.min_chars,
        max_chars=args.max_chars,
        embedding_model=args.embedding_model,
        decontam_threshold=args.threshold,
        seed=args.seed,
    )
    rep = build_corpus(args.input, args.out, s, args.decontaminate)
    print(rep.to_markdown())
    print(f"clusters written to {args.out} (report: {args.out}.report.md)")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        from spell.engine.models import prepare

        print(prepare(args.name, args.cache_dir))
        return 0
    from spell.engine.tiny import build_tiny_model

    print(build_tiny_model(args.name, arch=args.arch))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spell", description="SPELL self-play RL for long-context LLMs")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run self-play iterations (each a spell-iteration Prefect flow)")
    r.add_argument("--config", default="configs/cpu-smoke.yaml")
    r.add_argument("--run", default=None, help="run name (default: run.name of the config)")
    r.add_argument("--iterations", type=int, default=1)
    r.add_argument("--resume", action="store_true", help="continue an existing run where it stopped")
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
    e.add_argument("--name", default=None, help="results go to runs/<name>/eval/")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    e.set_defaults(fn=cmd_eval)

    d = sub.add_parser("deploy", help="serve spell-iteration/local and spell-train/local on a Prefect server")
    d.add_argument("--config", default="configs/cpu-smoke.yaml")
    d.add_argument("--runs-dir", default="runs")
    d.set_defaults(fn=cmd_deploy)

    ex = sub.add_parser("export", help="a checkpoint (sharded or not) -> one Hugging Face safetensors folder")
    ex.add_argument("checkpoint", help="runs/<run>/checkpoints/iter_<k>")
    ex.add_argument("--out", required=True)
    ex.set_defaults(fn=cmd_export)

    rep = sub.add_parser("report", help="curves per iteration of a run (PNG + HTML)")
    rep.add_argument("--run", required=True)
    rep.add_argument("--runs-dir", default="runs")
    rep.set_defaults(fn=cmd_report)

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
    from spell.config import ConfigError
    from spell.corpus import CorpusError
    from spell.engine.learner_group import ClusterResourceError
    from storage.layout import StorageError

    try:
        return int(args.fn(args) or 0)
    except (ConfigError, CorpusError, StorageError, ClusterResourceError) as exc:  # the user's to fix: no traceback
        print(f"spell: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
