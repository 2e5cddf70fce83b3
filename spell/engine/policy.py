"""The policy: one model, its tokenizer, the learner and a rollout backend sharing the same weights.

Plain Python so it runs in-process (tests, notebooks) and as a Ray actor (`spell.engine.ray_policy`).
Every method takes and returns plain Python objects (lists, dicts, floats), never tensors, so a
driver process without torch can call it through Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from spell.engine.learner.core import Learner, TrainSequence
from spell.engine.models.checkpoint import load_optimizer_state, read_state, restore_rng, save_checkpoint
from spell.engine.models.loading import (
    ADAPTER_DIR,
    attention_implementation,
    enable_activation_checkpointing,
    free_cuda_cache,
    load_causal_lm,
    pick_device,
    pick_dtype,
    resolve_model_path,
    wrap_lora,
)
from spell.engine.placement import actor_env
from spell.engine.rollout.compute_dtype import dtype_names, rollout_dtype
from spell.engine.rollout.interface import Prompt, SamplingParams, render_prompt
from spell.engine.rollout.replicas import RolloutReplicas
from spell.engine.rollout.rows import rollout_rows
from spell.engine.spec import PolicySpec
from spell.engine.sync.broadcast import ReplicaEndpoint, SyncStats

log = logging.getLogger(__name__)


def pin_weights(model: torch.nn.Module) -> None:
    """Move a host-memory model's tensors into page-locked memory, in place (GPU copies to and from it run
    as DMA; at 7B pageable copies cost the sync about 45 GB of staging a step)."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.device.type == "cpu" and not t.is_pinned():
                t.data = t.data.pin_memory()


class Policy:
    """Tokenizer + model + learner + rollout backend. `checkpoint` resumes weights, optimizer and RNG."""

    def __init__(self, spec: PolicySpec | dict[str, Any], checkpoint: str | None = None):
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.spec = spec if isinstance(spec, PolicySpec) else PolicySpec.from_dict(spec)
        # Ray sets OMP_NUM_THREADS to the actor's CPU request (1); the policy is the one heavy process here.
        torch.set_num_threads(self.spec.threads or os.cpu_count() or 1)
        self.device = pick_device(self.spec.device)
        self.dtype = pick_dtype(self.spec.dtype, self.device)  # compute dtype
        if self.spec.learner_ranks > 1 and self.spec.backend == "vllm":
            # a sharded learner trains on its own GPUs: this full copy only feeds vLLM (and checkpoints), so
            # it stays in host memory, not beside vLLM on the GPU (vLLM replicas hold none: vllm_replica)
            self.device = torch.device("cpu")
        self.base_path = resolve_model_path(self.spec.model_path, self.spec.cache_dir)  # the run's initial model
        ckpt = Path(checkpoint) if checkpoint else None
        lora = self.spec.lora_rank > 0
        adapter = ckpt / ADAPTER_DIR if lora and ckpt and (ckpt / ADAPTER_DIR).is_dir() else None
        if lora and ckpt and adapter is None:
            log.warning("%s has no %s/: LoRA restarts with a fresh adapter on its merged weights", ckpt, ADAPTER_DIR)
        # LoRA resumes the saved adapter on the frozen initial weights; full weights resume from the checkpoint
        source = str(ckpt / "model") if ckpt and adapter is None else self.base_path
        self.weights_path = source  # the folder this copy's weights came from (vLLM starts from it as it is)
        trust = self.spec.trust_remote_code
        self.tokenizer = AutoTokenizer.from_pretrained(str(ckpt / "model") if ckpt else source, trust_remote_code=trust)
        # trained full weights (and so AdamW state) are fp32 masters under autocast (spec Part A 'loss'); a
        # sharded learner keeps its masters in its shards, and this copy only rolls out and saves: compute dtype
        master = torch.float32 if self.spec.trains and not lora and self.spec.learner_ranks <= 1 else self.dtype
        attn = attention_implementation(self.device, self.spec.attention)
        self.model = load_causal_lm(source, master, self.device, trust, attn)
        if self.spec.gradient_checkpointing:
            enable_activation_checkpointing(self.model)
            self.model.config.use_cache = False
        if lora:
            self.model = wrap_lora(self.model, self.spec.lora_rank, self.spec.lora_alpha, adapter)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        ref = None
        if self.spec.learner.kl_coef > 0 and self.spec.trains:
            # KL against the run's initial model, never the checkpoint a resumed run starts from (Part A 'loss')
            ref = load_causal_lm(self.base_path, self.dtype, self.device, trust)
            ref.eval().requires_grad_(False)
        self.learner = Learner(self.model, self.spec.learner, pad_id=self.pad_id, ref_model=ref, autocast=self.dtype)
        self.group = self._make_learner_group(source, checkpoint)
        if self.group is not None and torch.cuda.is_available():
            pin_weights(self.model)  # the pull lands in these host weights and the push reads them: DMA, not pageable
        self.generator = self._make_generator()
        self.scripted = self._make_scripted()
        self.replicas = RolloutReplicas.start(Policy, self.spec, self.group, self._colocated(), checkpoint)
        self._endpoint: ReplicaEndpoint | None = None  # a replica's end of the weight-sync group
        self._pull = self._learner_sync()
        self._replicas_ready = True  # False after a failed step, until the next push reaches them
        self.trained_iteration = 0
        self.busy_seconds = {"generate": 0.0, "train": 0.0}  # for bench/overhead.py
        self.started_at = time.time()  # two flow runs that report the same value were served by one warm actor
        if ckpt:
            self._restore(ckpt, optimizer=self.spec.trains and not (lora and adapter is None))

    def _restore(self, ckpt: Path, optimizer: bool) -> None:
        """Optimizer state, step counters and RNG of a checkpoint."""
        import json

        opt = load_optimizer_state(ckpt) if optimizer else None
        if opt is not None:
            self.learner.optimizer.load_state_dict(opt)
        st = read_state(ckpt)
        self.learner.steps = int(st.get("learner_steps", 0))
        self.learner.skipped_steps = int(st.get("skipped_steps", 0))
        self.trained_iteration = int(st.get("trained_iteration", st.get("iteration", 0)))
        rng = ckpt / "rng.json"
        if rng.is_file():
            restore_rng(json.loads(rng.read_text()))

    def _make_learner_group(self, source: str, checkpoint: str | None) -> Any:
        """engine.learner_ranks > 1: FSDP2 over a group of Ray actors trains; this process keeps a full copy
        of the weights for generation (refreshed after every step) and for HF checkpoints."""
        if self.spec.learner_ranks <= 1 or not self.spec.trains:
            return None
        from spell.engine.learner.fsdp import ShardingSettings
        from spell.engine.learner.group import LearnerGroup

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
            env=actor_env(self.spec.mask_gpus, self.spec.nccl_nvls),
            attention=self.spec.attention,
        )

    def _learner_sync(self) -> Any:
        """With a sharded learner, a broadcast group rooted at its rank 0 feeds this copy after each step."""
        if self.group is None:
            return None
        from spell.engine.sync.sharded import LearnerWeightSync

        nccl = torch.cuda.is_available() and self.spec.gpus_per_rank > 0
        return LearnerWeightSync(self.group, self.model, "nccl" if nccl else "gloo")

    def _colocated(self) -> bool:
        """Rollout replicas share the sharded learner's GPUs (one replica per rank's GPU, half each)."""
        return (
            self.spec.rollout_replicas > 1
            and self.spec.learner_ranks > 1
            and self.spec.gpus_per_rank > 0  # CPU bundles: a replica asks for no GPU there, whatever this actor has
            and torch.cuda.is_available()
        )

    def _make_generator(self) -> Any:
        if self.spec.backend == "scripted":  # test double for pipeline tests (see spell.engine.rollout.scripted)
            from spell.engine.rollout.scripted import ScriptedGenerator

            return ScriptedGenerator(self.tokenizer)
        if self.spec.backend == "vllm":
            from spell.engine.rollout.vllm_backend import VLLMGenerator

            return VLLMGenerator(
                self.model,
                self.tokenizer,
                max_context=self.spec.max_context,
                gpu_memory_utilization=self.spec.gpu_memory_utilization,
                tensor_parallel_size=self.spec.tensor_parallel,
                sleep_mode=self.spec.sleep_between_phases,
                lora_rank=self.spec.lora_rank,
                dtype=self.dtype,
                base_path=self.base_path,
                weights_path=self.weights_path,
                batch_token_budget=self.spec.generation_token_budget,
                engine_seed=self.spec.engine_seed,
            )
        from spell.engine.rollout.hf_backend import TransformersGenerator

        return TransformersGenerator(
            self.model,
            self.tokenizer,
            self.spec.generation_token_budget,
            self.spec.max_context,
            self.dtype,
            share_prefill=self.spec.learner.shared_prefix,
            prefill_dtype=(dtypes := self.rollout_dtypes())["prefill"],
            decode_dtype=dtypes["decode"],
            decode_step=self.spec.decode_step,
        )

    def _make_scripted(self) -> Any:
        """Rule-played roles beside the model's (`engine.scripted_roles`): controlled learning checks."""
        if not self.spec.scripted_roles or self.spec.backend == "scripted":
            return None
        from spell.engine.rollout.scripted import ScriptedGenerator

        return ScriptedGenerator(self.tokenizer, garbage_rate=0.0)

    def _generator_for(self, role: str | None) -> Any:
        if self.scripted is not None and role in self.spec.scripted_roles:
            return self.scripted
        return self.generator

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
        role: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per prompt: its token ids and its completions. Prompts longer than `max_prompt_tokens` are not
        generated: they come back with `prompt_too_long` completions, so callers can count them.
        A prefill is appended to the rendered prompt and put back in front of each completion's text.
        `role` (questioner, grounding, responder, verifier) picks a rule-played generator where configured."""
        if self.replicas and self._replicas_ready and len(prompts) > 1:
            return self.replicas.rollout(self._rollout_here, prompts, params, max_prompt_tokens, prefills, role)
        return self._rollout_here(prompts, params, max_prompt_tokens, prefills, role)

    def _rollout_here(
        self, prompts: list[Prompt], params: Any, max_prompt_tokens: Any, prefills: Any, role: Any
    ) -> list[dict[str, Any]]:
        """`rollout` on this actor's own engine (same arguments), whatever replicas there are."""
        start = time.perf_counter()
        sp = params if isinstance(params, SamplingParams) else SamplingParams.from_dict(params)
        gen = self._generator_for(role)
        results = rollout_rows(gen, self.tokenizer, prompts, sp, max_prompt_tokens, prefills)
        self.busy_seconds["generate"] += time.perf_counter() - start
        return results

    def rollout_dtypes(self) -> dict[str, torch.dtype | None]:
        """engine.prefill_dtype / engine.decode_dtype resolved here ('auto' too); None: the model's own."""
        s, args = self.spec, (self.dtype, self.device.type)
        return {"prefill": rollout_dtype(s.prefill_dtype, *args), "decode": rollout_dtype(s.decode_dtype, *args)}

    def weight_dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).replace("torch.", "")

    def sync_ranks(self) -> int:
        """Members this replica adds to a weight-sync group (a vLLM replica: one per worker)."""
        return 1

    def join_weight_sync(self, address: tuple[str, int], rank: int, world: int, backend: str, plan: list,
                         wire: str) -> None:  # fmt: skip
        """A replica joins the broadcast group of its policy actor or of the sharded learner's rank 0."""
        self._endpoint = ReplicaEndpoint(address, rank, world, backend, plan, wire)

    def receive_weights(self) -> dict[str, float]:
        """A transformers replica takes the trained weights, broadcast bucket by bucket, into its model (its
        engine generates from it; a vLLM replica is a `VLLMReplica`)."""
        assert self._endpoint is not None, "join_weight_sync first"
        return self._endpoint.receive(self.model).as_metrics()

    def pause_generation(self) -> None:
        if self.spec.sleep_between_phases and hasattr(self.generator, "sleep"):
            self.generator.sleep()

    def resume_generation(self, model: Any | None = None) -> bool:
        """Wake the engine after a step; with `model` it loads those weights while waking (True if it did)."""
        if self.spec.sleep_between_phases and hasattr(self.generator, "wake_up"):
            free_cuda_cache()
            if model is None:
                self.generator.wake_up()
                return False
            self.generator.wake_up(model)
            return True
        return False

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
        self._replicas_call("pause_generation")
        try:
            if self.group is not None:
                metrics = self.group.train_step(seqs)
                if metrics.get("empty"):  # an all-empty batch is no step (as in the single-process learner)
                    pass
                elif not metrics.get("skipped"):
                    self.learner.steps += 1
                else:
                    self.learner.skipped_steps += 1
            else:
                metrics = self.learner.train_step([TrainSequence.from_dict(s) for s in seqs])
        except BaseException:
            # the engines dropped their weights to sleep: this one reloads its copy (the step's error is the
            # one raised), the replicas get none until the next push, so rollouts stay here until then
            self._replicas_ready = False
            with contextlib.suppress(Exception):
                self.resume_generation(self.model if getattr(gen, "weights_dropped", False) else None)
                self._replicas_call("resume_generation")
            raise
        # the order that fits a colocated replica beside a learner rank (issue 27 item 1): the ranks emptied
        # their allocator cache after the step and empty it again after their send, and only then does a
        # replica map its weights' memory; its KV cache wakes after the push has filled them
        hops = []
        if self._pull is not None and not metrics.get("skipped"):
            hops.append(self._pull.pull(self.model))  # from the sharded learner's rank 0
        self._replicas_call("resume_generation")
        if self.replicas:  # a replica asleep at level 2 dropped its weights: it takes them even after a skip
            hops.append(self.replicas.push(self.model))
        if hops:
            metrics = {**metrics, **SyncStats.total(hops).as_metrics()}
        self._replicas_ready = True
        sync = hasattr(gen, "sync_weights") and (not metrics.get("skipped") or getattr(gen, "weights_dropped", False))
        if not self.resume_generation(self.model if sync else None) and sync:
            gen.sync_weights(self.model)
        if iteration is not None:
            self.trained_iteration = max(self.trained_iteration, iteration)
        self.busy_seconds["train"] += time.perf_counter() - start
        return metrics

    def logprobs(self, seqs: list[dict[str, Any]]) -> list[list[float]]:
        return self.learner.logprobs([TrainSequence.from_dict({**s, "advantage": 0.0}) for s in seqs])

    # -- state -------------------------------------------------------------------------------------

    def save(self, root: str, name: str, state: dict[str, Any] | None = None) -> str:
        """An HF folder of the full weights (merged under LoRA, so it loads without peft) plus optimizer, RNG
        and counters; LoRA keeps its adapter beside it, a sharded learner its DCP shards."""
        model = self.model
        extra = None
        if self.spec.lora_rank > 0:
            import copy

            model = copy.deepcopy(self.model).merge_and_unload()
            extra = lambda d: self.model.save_pretrained(d / ADAPTER_DIR)  # noqa: E731
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
            out = save_checkpoint(root, name, model, self.tokenizer, self.learner.optimizer, st, extra=extra)
        return str(out)

    def _replicas_call(self, method: str) -> None:
        if self.replicas:
            self.replicas.call_all(method)

    def info(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.model.parameters())
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "master_dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "parameters": int(n),
            "learner_steps": self.learner.steps,
            "skipped_steps": self.learner.skipped_steps,
            "trained_iteration": self.trained_iteration,
            "backend": self.spec.backend,
            **(dtype_names(self.rollout_dtypes()) if self.spec.backend == "transformers" else {}),
            "learner_ranks": self.spec.learner_ranks,
            "busy_seconds": dict(self.busy_seconds),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "spec": self.spec.to_dict(),
        }
