"""`spell report --run R`: curves per iteration as a PNG and an HTML page (rewards and accuracy per role
and task, questioner case mix, verifier agreement, questioner context length, the learning signals of
`storage.learning`, verifier calibration, guard rejections, seconds per stage)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from storage.layout import Manifest, RunLayout, stage_of
from storage.learning import learning_rows
from storage.views import open_history


def build_report(runs_dir: str | Path, run: str) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = RunLayout(runs_dir, run)
    con = open_history(runs_dir, run)

    def series(sql: str) -> dict[str, tuple[list[int], list[float]]]:
        out: dict[str, tuple[list[int], list[float]]] = {}
        for key, it, val in con.execute(sql).fetchall():
            xs, ys = out.setdefault(str(key), ([], []))
            xs.append(int(it))
            ys.append(float(val) if val is not None else float("nan"))
        return out

    main = "branch = ''"
    panels = {
        "mean reward per role": series(
            f"SELECT role, iteration, avg(reward) FROM rewards WHERE {main} "
            "AND reward IS NOT NULL GROUP BY ALL ORDER BY 1, 2"
        ),
        "responder accuracy per task": series(
            f"SELECT task, iteration, avg(reward) FROM rewards WHERE {main} "
            "AND role = 'responder' GROUP BY ALL ORDER BY 1, 2"
        ),
        "questioner case mix (count)": series(
            f'SELECT "case", iteration, count(*) FROM rewards WHERE {main} '
            "AND role = 'questioner' GROUP BY ALL ORDER BY 1, 2"
        ),
        "verifier agreement": series(
            f"SELECT 'agreement', iteration, avg(agreement) FROM rewards WHERE {main} "
            "AND role = 'verifier' GROUP BY ALL ORDER BY 1, 2"
        ),
        "questioner context (docs shown)": series(
            f"SELECT task, iteration, avg(len(doc_indices)) FROM prompts WHERE {main} GROUP BY ALL ORDER BY 1, 2"
        ),
    }
    signals = learning_rows(con)
    panels["learning signals (share)"] = {
        key: ([r["iteration"] for r in signals if r[key] is not None], [r[key] for r in signals if r[key] is not None])
        for key in ("valid_share", "good_share", "rule_accuracy", "reward_accuracy")
    }
    panels["verifier calibration (share)"] = {
        label: (
            [r["iteration"] for r in signals if r[key] is not None],
            [r[key] for r in signals if r[key] is not None],
        )
        for label, key in (
            ("agreement with decisive rule", "verifier_agreement"),
            ("yes rate", "verifier_yes_rate"),
            ("false yes rate", "verifier_false_yes_rate"),
        )
    }
    panels["guard rejections, verifier collapses (count)"] = series(
        "SELECT regexp_extract(reason, 'guard ([a-z_]+):', 1), iteration, count(*) FROM "
        "(SELECT iteration, reason FROM questions UNION ALL SELECT iteration, reason FROM responses) "
        "WHERE reason LIKE 'guard %' GROUP BY ALL ORDER BY 1, 2"
    )
    panels["guard rejections, verifier collapses (count)"]["verifier collapse (rounds)"] = (
        [r["iteration"] for r in signals],
        [float(r["collapsed_rounds"]) for r in signals],
    )
    stage_secs: dict[str, tuple[list[int], list[float]]] = {}
    for k in layout.iterations():
        totals: dict[str, float] = {}
        for key, rec in Manifest(layout.iter_dir(k)).data.get("stages", {}).items():
            stage = stage_of(key)
            totals[stage] = totals.get(stage, 0.0) + float(rec.get("summary", {}).get("seconds", 0.0))
        for stage, v in totals.items():
            xs, ys = stage_secs.setdefault(stage, ([], []))
            xs.append(k)
            ys.append(v)
    panels["seconds per stage"] = stage_secs

    fig, axes = plt.subplots(3, 3, figsize=(15, 12))
    for ax, (title, data) in zip(axes.flat, panels.items(), strict=True):
        for label, (xs, ys) in sorted(data.items()):
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        if data:
            ax.legend(fontsize=7)
    fig.suptitle(f"spell run '{run}'")
    fig.tight_layout()
    png = layout.root / "report.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    html = layout.root / "report.html"
    b64 = base64.b64encode(png.read_bytes()).decode()
    tables = json.dumps({t: {k: dict(zip(*v, strict=True)) for k, v in d.items()} for t, d in panels.items()}, indent=1)
    html.write_text(
        f"<html><head><title>spell {run}</title></head><body><h1>spell run {run}</h1>"
        f"<img src='data:image/png;base64,{b64}'/><h2>values</h2><pre>{tables}</pre></body></html>"
    )
    return png, html
