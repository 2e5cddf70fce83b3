"""Stage 5, reward: role rewards per round, case types, and the round's verifier calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from spell.calibration import from_row
from spell.stages.reward import Votes, reward_rows, round_calibration, usable_group_count
from storage.io import read_rows, write_rows
from tasks.artifacts import log
from tasks.context import StageContext
from tasks.runner import run_stage


@task(name="reward", task_run_name="reward-i{ctx.iteration}-r{rnd}")
def reward(ctx: StageContext, rnd: int) -> dict[str, Any]:
    kinds = ("questions", "grounding", "responses", "verdicts")
    window = _earlier_calibration_files(ctx, rnd, ctx.cfg.guards.collapse_window - 1)
    srcs = [ctx.file(k, rnd) for k in kinds] + window
    out, out_cal = ctx.file("rewards", rnd), ctx.file("calibration", rnd)

    def compute() -> dict[str, Any]:
        q, g, r, v = (read_rows(p) for p in srcs[: len(kinds)])
        votes = Votes.of(v)  # once: the calibration and the rewards read the same votes
        earlier = [from_row(row) for f in window for row in read_rows(f)]
        cal = round_calibration(r, votes, ctx.cfg, q, earlier)
        if cal.collapsed:
            log.warning(
                "iteration %d round %d: verifier collapse (YES on %.0f%% of %d decisive rule-wrong answers): "
                "responder rewards fall back to the rule check this round",
                ctx.iteration,
                rnd,
                100 * cal.window_false_yes_rate,
                cal.window_decisive_wrong,
            )
        rows = reward_rows(q, g, r, votes, ctx.cfg, cal)
        write_rows(out, "rewards", rows)
        write_rows(out_cal, "calibration", [cal.row({"run": ctx.layout.run, "iteration": ctx.iteration, "round": rnd})])
        cases: dict[str, int] = {}
        for x in rows:
            if x["role"] == "questioner":
                cases[x["case"]] = cases.get(x["case"], 0) + 1
        return {
            "path": str(out),
            "rows": len(rows),
            "usable_groups": usable_group_count(rows, ctx.cfg.sampling.dynamic),
            **{f"case_{k}": n for k, n in cases.items()},
            "verifier_yes_rate": round(cal.yes_rate, 4),
            "verifier_false_yes_rate": round(cal.false_yes_rate, 4),
            "verifier_collapsed": int(cal.collapsed),
        }

    return run_stage(ctx, f"reward_r{rnd:02d}", srcs, [out, out_cal], compute)


def _earlier_calibration_files(ctx: StageContext, rnd: int, n: int) -> list[Path]:
    """The latest n rounds' calibration files before this one (guards.collapse_window)."""
    if n <= 0:
        return []
    return [f for f in ctx.prior_round_files(("calibration",), rnd)["calibration"] if f.is_file()][-n:]
