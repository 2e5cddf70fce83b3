"""Stage 6, select-batch, as a pure function: the training batch over all rounds of an iteration, with
advantages attached (paper §3.4; the selection rules are `spell.batch`)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from spell.batch import QuestionerSample, ResponderGroup, VerifierGroup, select_training_batch
from spell.config import SpellConfig
from spell.stages.common import Row, stage_seed


def sample_tokens(
    questions: Sequence[Row], responder_prompts: Sequence[Row], responses: Sequence[Row], verdicts: Sequence[Row]
) -> dict[str, tuple[list[int], list[int]]]:
    """(prompt ids, response ids) per sample id of a round; a response's prompt is its question's, stored once."""
    tokens = {q["question_id"]: (q["prompt_ids"], q["response_ids"]) for q in questions}
    prompt = {p["question_id"]: p["prompt_ids"] for p in responder_prompts}
    tokens.update({r["response_id"]: (prompt[r["question_id"]], r["response_ids"]) for r in responses})
    tokens.update({v["verdict_id"]: (v["prompt_ids"], v["response_ids"]) for v in verdicts})
    return tokens


def batch_rows(
    rewards: Sequence[Row], tokens: dict[str, tuple[list[int], list[int]]], cfg: SpellConfig, run: str, iteration: int
) -> list[Row]:
    """The training batch over all rounds of an iteration, advantages attached (paper §3.4)."""
    qs, groups, vgroups = [], [], []
    resp: dict[str, list[Row]] = defaultdict(list)
    ver: dict[str, list[Row]] = defaultdict(list)
    for r in rewards:
        if r["role"] == "questioner":
            qs.append(QuestionerSample(r["sample_id"], r["task"], r["case"], r["reward"]))
        elif r["role"] == "responder":
            resp[r["group_id"]].append(r)
        else:
            ver[r["group_id"]].append(r)
    for gid, rows in resp.items():
        rows = sorted(rows, key=lambda x: x["sample_id"])
        groups.append(
            ResponderGroup(
                gid, rows[0]["task"], tuple(x["sample_id"] for x in rows), tuple(float(x["reward"]) for x in rows)
            )
        )
    for gid, rows in ver.items():
        rows = sorted(rows, key=lambda x: x["sample_id"])
        vgroups.append(
            VerifierGroup(
                gid,
                rows[0]["task"],
                tuple(x["sample_id"] for x in rows),
                tuple(float(x["reward"]) for x in rows),
                bool(rows[0]["eligible"]),
            )
        )
    groups.sort(key=lambda g: g.question_id)  # collection order: ids sort by iteration, round, prompt
    batch = select_training_batch(
        qs,
        groups,
        vgroups,
        train_batch_size=cfg.sampling.train_batch_size,
        negatives_ratio=cfg.questioner.negatives_ratio,
        verifier_share=cfg.verifier_share,
        questioner_normalize=cfg.questioner.normalize,
        rng=random.Random(stage_seed(cfg.run.seed, iteration, 0, "batch")),
        dynamic=cfg.sampling.dynamic,
        train_questioner=cfg.questioner.update,
        train_verifier=cfg.verifier.enabled and cfg.verifier.update,
        format_floor=cfg.questioner.format_floor,
    )
    out = []
    for b in batch.rows:
        prompt_ids, response_ids = tokens[b.sample_id]
        out.append(
            {
                "run": run,
                "iteration": iteration,
                "sample_id": b.sample_id,
                "role": b.role,
                "task": b.task,
                "group_id": b.group_id,
                "reward": b.reward,
                "advantage": b.advantage,
                "source": b.source,
                "prompt_ids": prompt_ids,
                "response_ids": response_ids,
            }
        )
    return out
