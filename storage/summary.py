"""Per-iteration metrics computed with DuckDB from the iteration's own artifacts (for MLflow and the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spell.guards import guard_counts
from storage.learning import CALIBRATION_AGGREGATES
from storage.views import query


def iteration_metrics(iter_dir: Path) -> dict[str, float]:
    files = {
        k: sorted(iter_dir.glob(f"{k}_r*.parquet"))
        for k in ("prompts", "questions", "responses", "verdicts", "rewards", "calibration")
    }
    files["batch"] = [iter_dir / "batch.parquet"]
    files["train_metrics"] = [iter_dir / "train_metrics.parquet"]
    m: dict[str, float] = {}

    def put(prefix: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
        for r in rows:
            for c in cols:
                if r.get(c) is not None:
                    m[f"{prefix.format(**r)}{c}"] = float(r[c])

    put(
        "reward/{role}/{task}/",
        query(
            files,
            """
        SELECT role, task, avg(reward) AS mean, count(*) AS n FROM rewards WHERE reward IS NOT NULL
        GROUP BY ALL""",
        ),
        ["mean", "n"],
    )
    put(
        "reward/{role}/",
        query(files, "SELECT role, avg(reward) AS mean FROM rewards WHERE reward IS NOT NULL GROUP BY ALL"),
        ["mean"],
    )
    put(
        "responder/{task}/",
        query(
            files,
            """
        SELECT task, avg(rule_score) AS rule_accuracy, avg(CASE WHEN majority >= 0 THEN 1 ELSE 0 END) AS verdict_rate,
               avg(reward) AS accuracy FROM rewards WHERE role = 'responder' GROUP BY ALL""",
        ),
        ["rule_accuracy", "verdict_rate", "accuracy"],
    )
    put(
        "questioner/case/{case}/",
        query(
            files,
            """
        SELECT "case", count(*) AS n FROM rewards WHERE role = 'questioner' GROUP BY ALL""",
        ),
        ["n"],
    )
    put(
        "questioner/",
        query(
            files,
            """
        SELECT avg(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS parse_rate, avg(response_tokens) AS response_tokens,
               avg(prompt_tokens) AS prompt_tokens FROM questions""",
        ),
        ["parse_rate", "response_tokens", "prompt_tokens"],
    )
    put(
        "questioner/",
        query(files, "SELECT avg(context_chars) AS context_chars, avg(len(doc_indices)) AS docs_shown FROM prompts"),
        ["context_chars", "docs_shown"],
    )
    put(
        "verifier/",
        query(
            files,
            """
        SELECT avg(agreement) AS agreement, avg(CASE WHEN eligible THEN 1 ELSE 0 END) AS eligible_rate
        FROM rewards WHERE role = 'verifier'""",
        ),
        ["agreement", "eligible_rate"],
    )
    put(
        "responder/", query(files, "SELECT avg(response_tokens) AS response_tokens FROM responses"), ["response_tokens"]
    )
    put("batch/{role}/", query(files, "SELECT role, count(*) AS n FROM batch GROUP BY ALL"), ["n"])
    put(
        "train/",
        query(files, "SELECT * EXCLUDE (run, iteration) FROM train_metrics"),
        [
            "loss",
            "grad_norm",
            "clip_fraction",
            "tokens",
            "padding_fraction",
            "skipped",
            "seconds",
            "computed_tokens",
            "sequence_tokens",
        ],
    )
    put(
        "questioner/",
        query(
            files, "SELECT avg(CASE WHEN status IN ('ok', 'rejected') THEN 1 ELSE 0 END) AS parsed_rate FROM questions"
        ),
        ["parsed_rate"],
    )
    put("responder/", query(files, "SELECT avg(rule_score) AS rule_accuracy FROM responses"), ["rule_accuracy"])
    reasons = query(files, "SELECT reason FROM questions WHERE status = 'rejected'")
    reasons += query(files, "SELECT reason FROM responses WHERE status = 'rejected'")
    m.update({f"guard/{k}/n": float(v) for k, v in guard_counts(r["reason"] for r in reasons).items()})
    put(
        "verifier/",
        query(files, f"SELECT {CALIBRATION_AGGREGATES} FROM calibration"),
        ["yes_rate", "false_yes_rate", "false_no_rate", "decisive_agreement", "decisive", "collapsed_rounds"],
    )
    return m
