"""Parquet schemas of every stage artifact, defined once. Ids join them:

prompts.prompt_id = questions.question_id = grounding.question_id = responder_prompts.question_id =
responses.question_id (a question's responder prompt is stored once, in `responder_prompts`);
responses.response_id = verdicts.response_id; rewards.sample_id is a question_id, response_id or
verdict_id depending on `role`; batch rows point at the same sample ids.
"""

from __future__ import annotations

import pyarrow as pa

from spell.vocab import ITERATION_STAGES, ROUND_STAGES

_ids = [
    ("run", pa.string()),
    ("iteration", pa.int32()),
    ("round", pa.int32()),
]
_generated = [
    ("response_ids", pa.list_(pa.int32())),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("response_tokens", pa.int32()),
]
_tokens = [("prompt_ids", pa.list_(pa.int32())), *_generated]

SCHEMAS: dict[str, pa.Schema] = {
    "prompts": pa.schema(
        _ids
        + [
            ("prompt_id", pa.string()),
            ("task", pa.string()),
            ("cluster_id", pa.string()),
            ("n_docs", pa.int32()),
            ("doc_indices", pa.list_(pa.int32())),
            ("new_doc_indices", pa.list_(pa.int32())),
            ("history_size", pa.int32()),
            ("history_questions", pa.list_(pa.string())),  # the history memory the prompt shows (repeated_question)
            ("history_answers", pa.list_(pa.string())),
            ("target_letter", pa.string()),
            ("context_chars", pa.int64()),
            ("prompt", pa.string()),
        ]
    ),
    "questions": pa.schema(
        _ids
        + [
            ("question_id", pa.string()),
            ("task", pa.string()),
            ("cluster_id", pa.string()),
            ("text", pa.string()),
            ("status", pa.string()),
            ("reason", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("options", pa.string()),
            ("responder_question", pa.string()),
        ]
        + _tokens
    ),
    "grounding": pa.schema(
        _ids
        + [
            ("question_id", pa.string()),
            ("task", pa.string()),
            ("sample", pa.int32()),
            ("text", pa.string()),
            ("prediction", pa.string()),
            ("rule_score", pa.float32()),
            ("finish_reason", pa.string()),
        ]
    ),
    "responder_prompts": pa.schema(
        _ids
        + [
            ("question_id", pa.string()),
            ("task", pa.string()),
            ("prompt_ids", pa.list_(pa.int32())),
            ("prompt_tokens", pa.int32()),
        ]
    ),
    "responses": pa.schema(
        _ids
        + [
            ("response_id", pa.string()),
            ("question_id", pa.string()),
            ("task", pa.string()),
            ("sample", pa.int32()),
            ("text", pa.string()),
            ("prediction", pa.string()),
            ("rule_score", pa.float32()),
            ("status", pa.string()),  # ok | unparsed | rejected (a reward-hacking guard; see `reason`)
            ("reason", pa.string()),
        ]
        + _generated  # the prompt's ids are the question's, in responder_prompts
    ),
    "verdicts": pa.schema(
        _ids
        + [
            ("verdict_id", pa.string()),
            ("response_id", pa.string()),
            ("question_id", pa.string()),
            ("task", pa.string()),
            ("sample", pa.int32()),
            ("text", pa.string()),
            ("vote", pa.int8()),
            ("majority", pa.int8()),
        ]
        + _tokens
    ),
    "rewards": pa.schema(
        _ids
        + [
            ("sample_id", pa.string()),
            ("role", pa.string()),
            ("task", pa.string()),
            ("group_id", pa.string()),
            ("cluster_id", pa.string()),
            ("reward", pa.float32()),
            ("case", pa.string()),
            ("rule_score", pa.float32()),
            ("majority", pa.int8()),
            ("agreement", pa.float32()),
            ("eligible", pa.bool_()),
            ("group_mean", pa.float32()),
            ("admitted", pa.bool_()),
            # responder and verifier rows: what labelled the answer ('verifier' majority, or 'rule' when the
            # collapse guard fell back to the rule check this round)
            ("label_source", pa.string()),
        ]
    ),
    # the verifier's calibration against decisive rule checks, one row per round (guards.verifier_collapse)
    "calibration": pa.schema(
        _ids
        + [
            ("verified", pa.int32()),
            ("yes_rate", pa.float64()),
            ("decisive_wrong", pa.int32()),
            ("false_yes_rate", pa.float64()),
            ("decisive_right", pa.int32()),
            ("false_no_rate", pa.float64()),
            ("decisive_agreement", pa.float64()),
            ("collapsed", pa.bool_()),
            ("window_rounds", pa.int32()),  # guards.collapse_window: the rounds the collapse decision pooled
            ("window_decisive_wrong", pa.int32()),
            ("window_false_yes_rate", pa.float64()),
        ]
    ),
    "batch": pa.schema(
        [("run", pa.string()), ("iteration", pa.int32())]
        + [
            ("sample_id", pa.string()),
            ("role", pa.string()),
            ("task", pa.string()),
            ("group_id", pa.string()),
            ("reward", pa.float32()),
            ("advantage", pa.float32()),
            ("source", pa.string()),  # paper: the paper's selection; floor: a questioner.format_floor pair
            ("prompt_ids", pa.list_(pa.int32())),
            ("response_ids", pa.list_(pa.int32())),
        ]
    ),
    "train_metrics": pa.schema(
        [("run", pa.string()), ("iteration", pa.int32())]
        + [
            (name, pa.float64())
            for name in (
                "loss",
                "grad_norm",
                "clip_fraction",
                "ratio_mean",
                "kl_mean",
                "tokens",
                "sequences",
                "padding_fraction",
                "micro_batches",
                "skipped",
                "seconds",
                # tokens the model computed vs the trajectories' own lengths (< 1 with engine.shared_prefix)
                "computed_tokens",
                "sequence_tokens",
                # the weight sync after the step: bytes each rollout copy received and seconds, summed over
                # the hops (sharded learner -> policy actor, policy actor -> replicas); 0 with neither
                "weight_sync_bytes",
                "weight_sync_seconds",
                # the sharded learner's fullest rank: its allocator peak in the step, and what it still
                # reserved after emptying its cache (what a colocated vLLM replica cannot use); 0 on the CPU
                "rank_peak_gib",
                "rank_reserved_gib",
            )
        ]
        + [("learner_steps", pa.int64())]
    ),
}

# corpus rows (doc_index -1) and single documents skipped when an iteration loaded its corpus, with why
SCHEMAS["rejects"] = pa.schema(
    [
        ("run", pa.string()),
        ("iteration", pa.int32()),
        ("source", pa.string()),
        ("row", pa.int64()),
        ("cluster_id", pa.string()),
        ("doc_index", pa.int32()),
        ("reason", pa.string()),
    ]
)

_PASS = [(f"pass@{k}", pa.float64()) for k in (1, 2, 4, 8)]
SCHEMAS["eval_samples"] = pa.schema(
    [
        ("eval", pa.string()),
        ("benchmark", pa.string()),
        ("item_id", pa.string()),
        ("sample", pa.int32()),
        ("text", pa.string()),
        ("prediction", pa.string()),
        ("gold", pa.string()),
        ("rule", pa.float32()),
        ("f1", pa.float32()),
        ("judge", pa.int8()),
        ("judge_error", pa.string()),
        ("score", pa.float32()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("response_tokens", pa.int32()),
    ]
)
SCHEMAS["eval_questions"] = pa.schema(
    [
        ("eval", pa.string()),
        ("benchmark", pa.string()),
        ("item_id", pa.string()),
        ("n", pa.int32()),
        ("correct", pa.int32()),
        ("mean_score", pa.float64()),
        ("mean_rule", pa.float64()),
        ("mean_judge", pa.float64()),
        *_PASS,
    ]
)
SCHEMAS["eval_tasks"] = pa.schema(
    [
        ("eval", pa.string()),
        ("benchmark", pa.string()),
        ("questions", pa.int32()),
        ("samples", pa.int32()),
        ("score", pa.float64()),
        ("rule", pa.float64()),
        ("judge", pa.float64()),
        ("judge_failures", pa.int32()),
        ("scorer", pa.string()),  # eval.scorer: released (the released SPELL evaluation's reading) or spell
        ("pass_k_estimator", pa.string()),  # eval.pass_k_estimator: unbiased (paper Eq. 11) or bootstrap (best@k)
        ("golds", pa.string()),  # all (max over listed answers) or first (eval.first_answer_only, LongBench QA)
        *_PASS,
    ]
)

__all__ = ["ITERATION_STAGES", "ROUND_STAGES", "SCHEMAS"]
