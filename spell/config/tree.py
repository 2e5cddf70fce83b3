"""The root of the config tree: every section, and the checks that span sections."""

from __future__ import annotations

from pydantic import Field, model_validator

from spell.config.algorithm import (
    DataConfig,
    GroundingConfig,
    HistoryConfig,
    OptimConfig,
    QuestionerConfig,
    ResponderConfig,
    RewardConfig,
    RolloutConfig,
    RunConfig,
    SamplingConfig,
    VerifierConfig,
)
from spell.config.base import _Section
from spell.config.engine import EngineConfig, ModelConfig
from spell.config.evaluation import EvalConfig, TrackingConfig
from spell.config.guards import GuardsConfig


class SpellConfig(_Section):
    """The whole tree. Sections mirror the paper: roles, rewards, sampling, optimisation."""

    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    questioner: QuestionerConfig = Field(default_factory=QuestionerConfig)
    grounding: GroundingConfig = Field(default_factory=GroundingConfig)
    responder: ResponderConfig = Field(default_factory=ResponderConfig)
    verifier: VerifierConfig = Field(default_factory=VerifierConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _rlvr_mode(self) -> SpellConfig:
        if self.run.mode == "rlvr":
            if not self.data.qa_file:
                raise ValueError("run.mode=rlvr needs data.qa_file (a labelled QA file)")
            # The static baseline has no questioner to ground, no verifier, and rewards by the rule alone.
            object.__setattr__(self.grounding, "enabled", False)
            object.__setattr__(self.verifier, "enabled", False)
            object.__setattr__(self.reward, "combine", "rule")
            object.__setattr__(self.questioner, "update", False)
        return self

    @model_validator(mode="after")
    def _sharded_learner(self) -> SpellConfig:
        if self.engine.rollout_replicas > 1 and self.model.lora_rank > 0:
            raise ValueError("engine.rollout_replicas > 1 with LoRA is not supported: use one rollout engine")
        if self.engine.learner_ranks > 1 and self.engine.rollout_replicas - 1 > self.engine.learner_ranks:
            raise ValueError(
                f"engine.rollout_replicas={self.engine.rollout_replicas}: at most learner_ranks + 1 "
                f"({self.engine.learner_ranks + 1}); each replica shares one learner rank's GPU"
            )
        if self.engine.learner_ranks > 1 and self.optim.kl_coef > 0:
            raise ValueError(
                "optim.kl_coef > 0 with engine.learner_ranks > 1: the sharded learner has no reference model; "
                "use one learner rank for a KL term, or kl_coef 0 (the paper's beta = 0)"
            )
        if self.engine.learner_ranks > 1 and self.model.lora_rank > 0:
            raise ValueError(
                "model.lora_rank > 0 with engine.learner_ranks > 1: LoRA trains few weights, one rank holds "
                "them; set engine.learner_ranks=1 (the qwen3-4b-1gpu-lora preset)"
            )
        return self

    @property
    def verifier_share(self) -> float:
        """Verifier groups per collected responder group: G * update_ratio / votes (spec Part A)."""
        return self.responder.group_size * self.verifier.update_ratio / self.verifier.votes

    @property
    def verifier_groups_per_step(self) -> int:
        """At a full batch: train_batch_size * G * update_ratio / votes, e.g. 128*8*0.125/8 = 16 (spec §1.6);
        fewer when fewer responder groups were collected."""
        return int(self.sampling.train_batch_size * self.verifier_share + 1e-9)
