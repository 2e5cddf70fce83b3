"""Stage 4, verify-vote: n judgments per parsed response and their strict majority."""

from __future__ import annotations

from typing import Any

from prefect import task

from spell.stages.verify import verdict_rows, verifier_requests
from storage.io import read_rows, write_rows
from tasks.actor import generate, policy, prompt_chunk
from tasks.context import StageContext
from tasks.runner import run_stage
from tasks.sampling import prefills, sampling


@task(name="verify-vote", task_run_name="verify-i{ctx.iteration}-r{rnd}", retries=2, retry_delay_seconds=5)
def verify(ctx: StageContext, rnd: int) -> dict[str, Any]:
    src_q, src_r, out = ctx.file("questions", rnd), ctx.file("responses", rnd), ctx.file("verdicts", rnd)
    cfg = ctx.cfg

    def compute() -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        if cfg.verifier.enabled:
            reqs = verifier_requests(read_rows(src_r), read_rows(src_q))
            if reqs:
                ro = generate(
                    policy(ctx),
                    [p for _, p in reqs],
                    sampling(ctx, cfg.verifier.votes, "verify", rnd),
                    None,
                    prefills(ctx, "verifier", [r["task"] for r, _ in reqs]),
                    desc=f"verify i{ctx.iteration} r{rnd}",
                    role="verifier",
                    chunk=prompt_chunk(ctx),
                )
                rows = verdict_rows(reqs, ro)
        write_rows(out, "verdicts", rows)
        valid = [r for r in rows if r["vote"] in (0, 1)]
        return {
            "path": str(out),
            "rows": len(rows),
            "responses_verified": len(rows) // max(cfg.verifier.votes, 1),
            "vote_parse_rate": len(valid) / max(len(rows), 1),
        }

    return run_stage(ctx, f"verify_r{rnd:02d}", [src_q, src_r], [out], compute)
