"""What the pure stage functions share: the row type, the per-stage seed, a row's run/iteration/round ids."""

from __future__ import annotations

import hashlib
from typing import Any

Row = dict[str, Any]


def stage_seed(seed: int, iteration: int, rnd: int, stage: str) -> int:
    """A seed per (run seed, iteration, round, stage): re-running a stage reproduces its rows."""
    digest = hashlib.sha256(f"{seed}:{iteration}:{rnd}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def ids(run: str, iteration: int, rnd: int) -> Row:
    return {"run": run, "iteration": iteration, "round": rnd}


def generated_cols(c: Row) -> Row:
    """A completion's token columns (what the GRPO step trains on and the views count), its prompt's apart."""
    return {
        "response_ids": c["token_ids"],
        "finish_reason": c["finish_reason"],
        "prompt_tokens": c["prompt_tokens"],
        "response_tokens": len(c["token_ids"]),
    }


def token_cols(prompt_ids: list[int], c: Row) -> Row:
    return {"prompt_ids": prompt_ids, **generated_cols(c)}
