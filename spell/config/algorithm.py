"""The paper's sections of the config tree: run, data, history, the three roles, rewards, sampling,
rollout, optimisation (arXiv 2509.23863 §3-4, App. E; spec Part A), each default once with its help text."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from spell.config.base import _field, _Section
from spell.vocab import TASKS


class RunConfig(_Section):
    mode: Literal["selfplay", "rlvr"] = _field(
        "selfplay",
        "'selfplay': SPELL. 'rlvr': the paper's static RLVR baseline (App. E.5): questions and gold answers come "
        "from data.qa_file, the responder is rewarded by the rule check, and the questioner, grounding and "
        "verifier stages are off.",
    )
    name: str = _field("demo", "Run name; artifacts go to `<runs_dir>/<name>/`.", pattern=r"^[A-Za-z0-9_.-]+$")
    runs_dir: str = _field("runs", "Directory holding every run's artifacts, checkpoints and MLflow store.")
    seed: int = _field(0, "Global seed: task sampler, document subsets, MC target letters, generation.", ge=0)
    min_free_disk_gb: float = _field(
        1.0,
        "Free space the runs directory must have before an iteration starts, on top of room for two more "
        "checkpoints the size of the newest one; less stops the run before any work.",
        ge=0,
    )


class DataConfig(_Section):
    corpus: str = _field("", "Parquet file of document clusters (one row per cluster, one task per row).")
    task_weights: dict[str, float] = _field(
        {t: 1.0 for t in TASKS},
        "Relative sampling weight per task; the paper uses equal weights (§4.1, App. E.1; spec Part A 'tasks').",
    )
    qa_file: str = _field("", "Labelled QA file for run.mode=rlvr (HotpotQA, MuSiQue, TAT-QA or JSONL rows).")
    docs_per_visit: int = _field(
        5, "m: new documents shown to the questioner per visit of a cluster (paper §3.2, App. E.1).", ge=1
    )
    max_reject_share: float = _field(
        0.5,
        "Stop when more than this share of corpus rows is rejected (bad rows are skipped and recorded in the "
        "`rejects` table); a higher share usually means a wrong file or format.",
        ge=0,
        le=1,
    )

    @model_validator(mode="after")
    def _check_weights(self) -> DataConfig:
        from spell import task_types  # the registry: a task type is a module, not a config entry

        known = task_types.names()
        unknown = sorted(set(self.task_weights) - set(known))
        if unknown:
            raise ValueError(f"task_weights has unknown task(s) {unknown}; known tasks are {list(known)}")
        if any(w < 0 for w in self.task_weights.values()):
            raise ValueError("task_weights must be >= 0")
        if sum(self.task_weights.values()) <= 0:
            raise ValueError("task_weights must give at least one task a positive weight")
        return self


class HistoryConfig(_Section):
    enabled: bool = _field(True, "Keep a history memory per (task, cluster) (paper §3.2; ablation 'w/o history').")
    size: int = _field(3, "L: remembered questions per (task, cluster), FIFO eviction (paper §3.2).", ge=1)
    admit: Literal["paper", "any_correct"] = _field(
        "paper",
        "'paper': admit iff 0 < mean responder reward < 1 (Alg. 1); "
        "'any_correct': 0.01 <= mean <= 1 as the official code does (spec Part B §9.1).",
    )
    context: Literal["paper", "cumulative"] = _field(
        "paper",
        "'paper': remembered entries' docs plus m new ones (at most L*m+m docs); "
        "'cumulative': grows until the cluster is used up, as the official code (spec Part B §9.2).",
    )
    dedup: bool = _field(True, "Skip a question whose normalized text is already in the cluster's memory.")


class QuestionerConfig(_Section):
    reward: Literal["gaussian", "rzero", "reverse"] = _field(
        "gaussian", "Map from responder accuracy to questioner reward (paper Eq. 7; Table 3 variants)."
    )
    sigma: float = _field(1.0 / 6.0, "Width of the Gaussian questioner reward (paper Eq. 7, Table 3).", gt=0)
    normalize: Literal["task", "batch"] = _field(
        "task",
        "Questioner advantage z-score per task (official code) or over the whole batch (paper Eq. 9).",
    )
    negatives_ratio: float = _field(
        1.0,
        "Failed questioner samples per good one, per task (paper §3.4; 0 = ablation 'w/o format penalty').",
        ge=0,
    )
    format_floor: int = _field(
        0,
        "Not in the paper (0 there): per task, top the step's questioner rows up to this many with format pairs "
        "(a parsed, grounded proposal off the frontier beside one of the lowest reward: bad format or guard-rejected), "
        "so a model that never reaches the frontier still trains its format. Their own advantage group, never "
        "larger than a frontier row's; `source=floor` in batch.parquet; none under negatives_ratio=0.",
        ge=0,
    )
    bad_format_reward: float = _field(-1.0, "Reward for an unparsable questioner output (paper Eq. 7).")
    ungrounded_reward: float = _field(-0.5, "Reward for a question answered without documents (paper Eq. 7).")
    max_answer_tokens: int = _field(
        40, "General-QA reference answers longer than this are invalid and skipped (spec Part B §2.4).", ge=1
    )
    update: bool = _field(True, "Train on questioner samples (ablation 'w/o questioner update', Table 2).")


class GroundingConfig(_Section):
    enabled: bool = _field(True, "Drop questions answered correctly with no documents (paper §3.3).")
    samples: int = _field(
        1,
        "No-context answers per question; the question is dropped only if all are correct (use 2 for MC).",
        ge=1,
    )


class ResponderConfig(_Section):
    group_size: int = _field(8, "G: responder answers per question over the whole cluster (paper §3.3, Table 3).", ge=2)
    max_prompt_tokens: int = _field(
        16384, "Responder prompts longer than this are skipped and counted (paper: 16K input, App. E.3).", ge=1
    )


class VerifierConfig(_Section):
    enabled: bool = _field(True, "Use verifier votes in the responder reward (ablation 'w/o verifier').")
    votes: int = _field(8, "Judgments per responder answer; majority over them (paper §3.3, Eq. 4).", ge=1)
    label: Literal["maj_cons", "maj"] = _field(
        "maj_cons",
        "'maj_cons': a verifier group trains only if its majority equals the rule check; "
        "'maj': drop that condition (ablation 'w/o update consistency').",
    )
    agreement_low: float = _field(0.51, "Lower agreement bound for a trainable verifier group (spec §3.4).", ge=0, le=1)
    agreement_high: float = _field(
        0.99, "Upper agreement bound for a trainable verifier group (spec §3.4).", ge=0, le=1
    )
    update_ratio: float = _field(
        0.125,
        "Verifier groups per step = collected responder groups * G * ratio / votes: 128*8*0.125/8 = 16 at a "
        "full batch (spec §1.6; Part A 'verifier samples per step').",
        ge=0,
        le=1,
    )
    update: bool = _field(True, "Train on verifier samples (ablation 'w/o verifier update').")

    @model_validator(mode="after")
    def _check_bounds(self) -> VerifierConfig:
        if self.agreement_low > self.agreement_high:
            raise ValueError(
                f"agreement_low ({self.agreement_low}) must not exceed agreement_high ({self.agreement_high})"
            )
        return self


class RewardConfig(_Section):
    combine: Literal["max", "rule", "verifier"] = _field(
        "max",
        "Responder reward: max(rule check, verifier majority) (paper Eq. 6), or one of them alone; under "
        "'verifier' an answer with no majority counts 0. With verifier.enabled=false the rule check decides.",
    )
    format_only: bool = _field(
        False,
        "Control run, not the paper: every role is rewarded for a well-formed output only (a parsed proposal, "
        "a parsed answer, a readable vote), so its curves show what format learning alone does.",
    )
    random_reward: bool = _field(
        False,
        "Learner control, not the paper: every responder answer's reward is a fair coin (Bernoulli 0.5, drawn "
        "from run.seed and the answer's id), every other role's unchanged. Groups keep their variance but carry "
        "no signal, so a held-out rise under it is the optimiser's drift, not learning (issue 25, rung A).",
    )

    @model_validator(mode="after")
    def _one_control(self) -> RewardConfig:
        if self.format_only and self.random_reward:
            raise ValueError("reward.format_only and reward.random_reward are two controls: set one of them")
        return self


class SamplingConfig(_Section):
    dynamic: bool = _field(True, "Drop zero-variance responder groups and repeat rounds (paper §3.4).")
    max_rounds: int = _field(10, "Generation rounds per iteration before giving up (spec §1.6).", ge=1)
    train_batch_size: int = _field(128, "Responder groups (questions) per policy update (App. E.3).", ge=1)
    questions_per_round: int = _field(480, "Questioner prompts per generation round (App. E.3).", ge=1)


class RolloutConfig(_Section):
    temperature: float = _field(0.7, "Sampling temperature for every role (App. E.3).", ge=0)
    top_p: float = _field(0.95, "Nucleus sampling (App. E.3).", gt=0, le=1)
    top_k: int = _field(-1, "Top-k sampling; -1 disables it (App. E.3).", ge=-1)
    max_new_tokens: int = _field(4096, "Longest generation per sample (App. E.3: 4K for instruct models).", ge=1)
    prefill: bool | list[Literal["questioner", "responder", "verifier"]] = _field(
        False,
        "Start each reply with its required format (the questioner's json fence, the responder's answer "
        "phrase, the verifier's decision): true for every role, or a list of roles. For small demo models; "
        "the paper lets the model reason first.",
    )
    questioner_opening: Literal["json", "question_word"] = _field(
        "json",
        "With the questioner's prefill: 'json' starts its reply at the question's text; 'question_word' also "
        "starts the question with What / Which / How much (general QA / MC / DocMath), for models too small "
        "to write a question unprompted (they copy document sentences). Not in the paper.",
    )
    role_max_new_tokens: dict[str, int] = _field(
        {}, "Per-role caps overriding max_new_tokens (questioner, grounding, responder, verifier); demo presets."
    )

    def prefills(self, role: str) -> bool:
        """Whether replies of `role` start with their format (the grounding check is a responder reply)."""
        role = "responder" if role == "grounding" else role
        return self.prefill if isinstance(self.prefill, bool) else role in self.prefill

    @model_validator(mode="after")
    def _check_roles(self) -> RolloutConfig:
        bad = sorted(set(self.role_max_new_tokens) - {"questioner", "grounding", "responder", "verifier"})
        if bad:
            raise ValueError(f"role_max_new_tokens has unknown role(s) {bad}")
        return self


class OptimConfig(_Section):
    lr: float = _field(2e-6, "AdamW learning rate, constant, no warm-up (App. E.3).", gt=0)
    weight_decay: float = _field(0.01, "AdamW weight decay (spec §4.2).", ge=0)
    betas: tuple[float, float] = _field((0.9, 0.999), "AdamW betas (spec §4.2).")
    grad_clip: float = _field(1.0, "Gradient-norm clipping (spec §4.2).", gt=0)
    clip_low: float = _field(0.2, "PPO ratio clip, lower side epsilon (spec §4.2).", ge=0, lt=1)
    clip_high: float = _field(0.2, "PPO ratio clip, upper side epsilon (spec §4.2).", ge=0)
    kl_coef: float = _field(0.0, "KL penalty coefficient; 0 loads no reference model (paper §3.4: beta=0).", ge=0)

    @model_validator(mode="after")
    def _check_betas(self) -> OptimConfig:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self
