"""What the policy is built from: one plain-data spec that crosses process boundaries (Ray actors)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spell.engine.learner.core import LearnerSettings


@dataclass(frozen=True)
class PolicySpec:
    """Everything needed to (re)build the policy; plain data so it crosses process boundaries."""

    model_path: str
    dtype: str = "auto"  # the compute dtype; trained weights and optimizer state stay fp32 (spec Part A 'loss')
    device: str = "auto"
    backend: str = "transformers"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    lora_rank: int = 0
    lora_alpha: float = 32.0
    generation_token_budget: int = 16384
    prefill_dtype: str = "auto"  # engine.prefill_dtype: "auto", "model" or a torch dtype name (transformers backend)
    decode_dtype: str = "model"  # engine.decode_dtype: the decode steps' Linear matmuls ("auto" too; transformers)
    decode_step: str = "direct"  # engine.decode_step: the written-out step or the model's forward (transformers)
    max_context: int | None = None
    learner: LearnerSettings = field(default_factory=LearnerSettings)
    cache_dir: str = ""
    threads: int = 0  # torch CPU threads; 0 = every core of the machine
    train: bool = True  # False: generation only (evaluation), weights kept in the compute dtype
    scripted_roles: tuple[str, ...] = ()  # roles played by rule instead of the model (spell.engine.rollout.scripted)
    # scale (engine section): sharded learner group and vLLM settings
    learner_ranks: int = 1
    gpus_per_rank: float = 1.0
    cpus_per_rank: float = 1.0
    mixed_precision: str = "bf16"
    cpu_offload: bool = False
    sequence_parallel: int = 1
    tensor_parallel: int = 1
    gpu_memory_utilization: float = 0.5  # this engine's (the policy actor's, or a replica's own)
    replica_gpu_memory_utilization: float = 0.5  # what the replicas this policy starts take
    sleep_between_phases: bool = True
    placement: str = "PACK"
    rollout_replicas: int = 1
    attention: str = "auto"  # engine.attention: the learner's attention kernel
    engine_seed: int | None = None  # engine.vllm_seeding=engine: vLLM's one seed (None: a seed per request)
    mask_gpus: bool = True  # engine.mask_gpus: Ray's per-actor CUDA_VISIBLE_DEVICES
    nccl_nvls: bool = True  # engine.nccl_nvls
    replica: bool = False  # a generation-only copy (no learner group, no replicas of its own)
    group_name: str = "spell-learner"  # names the learner group's placement group (one per policy actor)

    @property
    def trains(self) -> bool:
        return self.train and not self.replica

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> PolicySpec:
        """Build from a `SpellConfig` (model, engine, rollout and optim sections)."""
        o = cfg.optim
        spec = cls(
            model_path=cfg.model.path,
            dtype=cfg.model.dtype,
            backend=cfg.engine.backend,
            trust_remote_code=cfg.model.trust_remote_code,
            gradient_checkpointing=cfg.model.gradient_checkpointing,
            lora_rank=cfg.model.lora_rank,
            lora_alpha=cfg.model.lora_alpha,
            generation_token_budget=cfg.engine.generation_token_budget,
            prefill_dtype=cfg.engine.prefill_dtype,
            decode_dtype=cfg.engine.decode_dtype,
            decode_step=cfg.engine.decode_step,
            max_context=cfg.engine.max_model_len or run_max_context(cfg),
            learner=LearnerSettings(
                lr=o.lr,
                weight_decay=o.weight_decay,
                betas=tuple(o.betas),
                grad_clip=o.grad_clip,
                clip_low=o.clip_low,
                clip_high=o.clip_high,
                kl_coef=o.kl_coef,
                token_budget=cfg.engine.train_token_budget,
                packing=cfg.engine.packing,
                temperature=cfg.rollout.temperature,
                shared_prefix=cfg.engine.shared_prefix and cfg.engine.sequence_parallel == 1,
                logprob_chunk=cfg.engine.logprob_chunk_tokens,
            ),
            cache_dir=str(Path(cfg.run.runs_dir) / ".models"),
            scripted_roles=tuple(cfg.engine.scripted_roles),
            learner_ranks=cfg.engine.learner_ranks,
            gpus_per_rank=cfg.engine.gpus_per_rank,
            cpus_per_rank=cfg.engine.cpus_per_rank,
            mixed_precision=cfg.engine.mixed_precision,
            cpu_offload=cfg.engine.cpu_offload,
            sequence_parallel=cfg.engine.sequence_parallel,
            tensor_parallel=cfg.engine.tensor_parallel,
            gpu_memory_utilization=cfg.engine.policy_gpu_memory_utilization or cfg.engine.gpu_memory_utilization,
            replica_gpu_memory_utilization=cfg.engine.gpu_memory_utilization,
            sleep_between_phases=cfg.engine.sleep_between_phases,
            placement=cfg.engine.placement,
            rollout_replicas=cfg.engine.rollout_replicas,
            attention=cfg.engine.attention,
            engine_seed=cfg.run.seed if cfg.engine.vllm_seeding == "engine" else None,
            mask_gpus=cfg.engine.mask_gpus,
            nccl_nvls=cfg.engine.nccl_nvls,
        )
        return replace(spec, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicySpec:
        d = dict(d)
        learner = d.pop("learner", {}) or {}
        if isinstance(learner, dict):
            learner = LearnerSettings(**{**learner, "betas": tuple(learner.get("betas", (0.9, 0.999)))})
        if "scripted_roles" in d:
            d["scripted_roles"] = tuple(d["scripted_roles"] or ())
        return cls(learner=learner, **d)


def run_max_context(cfg: Any) -> int:
    """The longest sequence a run generates: its longest prompt (responder or eval) plus its longest answer.

    vLLM sizes its KV cache and refuses to start from this; the model's own position limit (262K for
    Qwen3-2507) would ask for tens of GiB for one sequence.
    """
    prompt = max(cfg.responder.max_prompt_tokens, cfg.eval.max_input_tokens)
    return prompt + max(cfg.rollout.max_new_tokens, cfg.eval.max_new_tokens)
