"""`spell-eval`: evaluate a model on the long-context benchmarks, one Prefect task per benchmark.

    spell eval --config configs/eval-16k.yaml --model runs/demo/checkpoints/iter_0002/model --tasks hotpotqa musique
    prefect deployment run spell-eval/local -p model=... (after `spell deploy`)

Every raw sample is saved; rule and judge scores are reported separately and together, per sample
(`eval_samples_<benchmark>.parquet`), per question (`eval_questions_...`) and per benchmark
(`eval_tasks_...`) under `runs/<name>/eval/`, plus `report.md`, and logged to MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.common import eval_run_name, failed, resolve
from spell.config import SpellConfig
from spell.errors import SpellError
from spell.eval.benchmarks import MissingBenchmarkData, load_benchmark, missing_data
from spell.eval.judge import JudgeCache, OpenAIJudge, SelfJudge, resolve_api_key
from spell.eval.runner import BenchmarkResult, format_table, paper_average, run_benchmark
from storage.io import write_rows, write_text
from storage.layout import RunLayout

_POLICIES: dict[str, Any] = {}


def _policy(cfg: SpellConfig, model: str) -> Any:
    from spell.engine.policy import Policy, PolicySpec

    if model not in _POLICIES:
        _POLICIES[model] = Policy(PolicySpec.from_config(cfg, model_path=model, train=False))
    return _POLICIES[model]


def make_judge(cfg: SpellConfig, policy: Any, cache_path: Path) -> Any:
    e = cfg.eval
    cache = JudgeCache(cache_path)
    if e.judge == "openai":
        key = resolve_api_key(e.judge_api_key_env, e.judge_api_key_file)
        return OpenAIJudge(
            e.judge_base_url, e.judge_model, key, cache, e.judge_concurrency, e.judge_timeout, e.judge_retries
        )
    if e.judge == "self":
        params = {"n": 1, "temperature": 0.0, "max_new_tokens": 512}
        return SelfJudge(lambda ps: [r["completions"][0]["text"] for r in policy.rollout(ps, params)], cache)
    return None


@task(name="eval-benchmark", task_run_name="eval-{benchmark}")
def eval_benchmark(cfg: SpellConfig, model: str, benchmark: str, out_dir: Path, name: str) -> dict[str, Any]:
    policy = _policy(cfg, model)
    judge = make_judge(cfg, policy, out_dir / "judge_cache.jsonl")
    items = load_benchmark(benchmark, cfg.eval.data_dir, cfg.eval.limit or None)
    res: BenchmarkResult = run_benchmark(
        benchmark,
        items,
        cfg.eval,
        policy.render,
        policy.rollout,
        judge,
        seed=cfg.run.seed,
        prefill=cfg.rollout.prefills("responder"),
        progress=_progress_lines(),
    )
    for kind, rows in (("eval_samples", res.samples), ("eval_questions", res.questions), ("eval_tasks", [res.summary])):
        blank = {f"pass@{k}": None for k in (1, 2, 4, 8)}  # k > n_samples stays empty
        write_rows(out_dir / f"{kind}_{benchmark}.parquet", kind, [{**blank, "eval": name, **r} for r in rows])
    return {**res.summary, "judge_stats": dict(judge.stats) if judge is not None else None}


def _progress_lines() -> Any:
    """Progress lines into the flow-run log inside Prefect (a bar on a terminal otherwise)."""
    from tasks.artifacts import in_prefect_run, stage_logger

    return stage_logger().info if in_prefect_run() else None


def check_benchmarks(names: list[str], data_dir: str) -> None:
    """Every missing benchmark file named at once, before any model is loaded or folder written."""
    missing = [m for m in (missing_data(b, data_dir) for b in names) if m]
    if missing:
        raise MissingBenchmarkData(
            f"{len(missing)} of {len(names)} benchmarks cannot be read from eval.data_dir={data_dir}: "
            + " | ".join(missing)
            + " (or pick others with --tasks)"
        )


def evaluate(
    cfg: SpellConfig, model: str, benchmarks: list[str] | None = None, name: str | None = None
) -> dict[str, Any]:
    name = name or f"eval-{Path(model).parent.name if Path(model).name == 'model' else Path(model).name}"
    layout = RunLayout(cfg.run.runs_dir, name)
    benchmarks = list(benchmarks or cfg.eval.benchmarks)
    check_benchmarks(benchmarks, cfg.eval.data_dir)
    from spell.engine.models.loading import TINY_PREFIX
    from spell.engine.models.packaged import PACKAGED

    if not (model in PACKAGED or model.startswith(TINY_PREFIX) or Path(model).is_dir()):
        raise MissingBenchmarkData(f"model folder not found: {model} (spell never downloads from a hub)")
    out_dir = layout.root / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict[str, Any]] = {}
    for b in benchmarks:
        summaries[b] = eval_benchmark(cfg, model, b, out_dir, name)
    ks = [k for k in cfg.eval.pass_k if k <= cfg.eval.n_samples]
    table = format_table(summaries, ks)
    avg = paper_average(summaries)
    report = [
        f"# Evaluation `{name}`",
        "",
        f"model: `{model}`",
        "",
        f"samples per question: {cfg.eval.n_samples}, max input tokens: {cfg.eval.max_input_tokens}, "
        f"judge: {cfg.eval.judge}, scorer: {cfg.eval.scorer} (eval.scorer), pass@k: {cfg.eval.pass_k_estimator} "
        f"(eval.pass_k_estimator), LongBench QA scored against "
        f"{'its first answer' if cfg.eval.first_answer_only else 'every listed answer'} (eval.first_answer_only)",
        "",
        "```",
        table,
        "```",
        "",
    ]
    for b, s in summaries.items():
        if s.get("judge_stats"):
            report.append(f"- {b} judge: {s['judge_stats']}, failed samples: {s['judge_failures']}")
    write_text(out_dir / "report.md", "\n".join(report) + "\n")
    if cfg.tracking.mlflow:
        from storage.tracking import Tracker

        tracker = Tracker(layout, cfg.tracking.mlflow_uri)
        metrics = {  # MLflow names allow no '@': pass@4 is logged as pass_at_4
            f"eval/{b}/{k.replace('@', '_at_')}": v
            for b, s in summaries.items()
            for k, v in s.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if avg is not None:
            metrics["eval/avg"] = avg
        tracker.log_iteration(0, metrics, {"eval.model": model})
        tracker.finish()
    return {"name": name, "dir": str(out_dir), "summaries": summaries, "avg": avg, "table": table}


@flow(name="spell-eval", log_prints=True, flow_run_name=eval_run_name)
def spell_eval(
    model: str,
    config: str = "configs/eval-16k.yaml",
    benchmarks: list[str] | None = None,
    name: str | None = None,
    overrides: list[str] | None = None,
    runs_dir: str | None = None,
) -> Any:
    """Evaluate `model` (a Hugging Face folder) on the configured benchmarks; a missing file, model or bad
    config fails the run with one line before anything is loaded or written."""
    try:
        return evaluate(resolve(config, overrides, None, runs_dir), model, benchmarks, name)
    except SpellError as exc:
        return failed(exc)
