"""A generation-only rollout replica on vLLM that holds no weights of its own.

A replica used to be a whole `Policy`: a full Hugging Face copy of the model (in host memory, ~15 GB at 7B
in bf16) beside its vLLM engine, only to start vLLM from a snapshot of it and to receive every push into
it before loading it into vLLM. This one starts vLLM from the checkpoint folder (or the base model) and
each vLLM worker joins the trainer's broadcast group itself (`spell.engine.sync.vllm_worker`), so a push goes
bucket by bucket straight into vLLM's in-place reload. Ray actor API as `Policy`'s replica subset.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from spell.engine.models.loading import free_cuda_cache
from spell.engine.rollout.interface import Prompt, SamplingParams, render_prompt
from spell.engine.rollout.rows import rollout_rows
from spell.engine.spec import PolicySpec


class VLLMReplica:
    def __init__(self, spec: PolicySpec | dict[str, Any], checkpoint: str | None = None):
        from transformers import AutoTokenizer

        from spell.engine.models.loading import pick_device, pick_dtype, resolve_model_path
        from spell.engine.rollout.vllm_backend import VLLMGenerator

        self.spec = spec if isinstance(spec, PolicySpec) else PolicySpec.from_dict(spec)
        assert self.spec.lora_rank == 0, "rollout replicas train no adapter (config refuses LoRA with replicas)"
        self.dtype = pick_dtype(self.spec.dtype, pick_device(self.spec.device))
        path = str(Path(checkpoint) / "model") if checkpoint else resolve_model_path(self.spec.model_path,
                                                                                      self.spec.cache_dir)  # fmt: skip
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.spec.trust_remote_code)
        self.generator = VLLMGenerator(
            None,
            self.tokenizer,
            max_context=self.spec.max_context,
            gpu_memory_utilization=self.spec.gpu_memory_utilization,
            tensor_parallel_size=self.spec.tensor_parallel,
            sleep_mode=self.spec.sleep_between_phases,
            dtype=self.dtype,
            base_path=path,
            batch_token_budget=self.spec.generation_token_budget,
            engine_seed=self.spec.engine_seed,
        )
        self.scripted: Any = None
        if self.spec.scripted_roles:
            from spell.engine.rollout.scripted import ScriptedGenerator

            self.scripted = ScriptedGenerator(self.tokenizer, garbage_rate=0.0)
        self._asleep = self._kv_asleep = False
        self.started_at = time.time()

    def info(self) -> dict[str, Any]:
        return {"backend": "vllm", "replica": True, "dtype": self.weight_dtype(), "pid": os.getpid(),
                "started_at": self.started_at, "spec": self.spec.to_dict()}  # fmt: skip

    def rollout(self, prompts: list[Prompt], params: dict[str, Any] | SamplingParams,
                max_prompt_tokens: int | None = None, prefills: list[str] | None = None,
                role: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        self._wake_kv_cache()
        sp = params if isinstance(params, SamplingParams) else SamplingParams.from_dict(params)
        gen = self.scripted if self.scripted is not None and role in self.spec.scripted_roles else self.generator
        return rollout_rows(gen, self.tokenizer, prompts, sp, max_prompt_tokens, prefills)

    def render(self, prompts: list[Prompt]) -> list[list[int]]:
        return [render_prompt(self.tokenizer, p) for p in prompts]

    def weight_dtype(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def sync_ranks(self) -> int:
        """Members of the broadcast group: every tensor-parallel worker receives for itself."""
        return self.spec.tensor_parallel

    def join_weight_sync(self, address: tuple[str, int], rank: int, world: int, backend: str, plan: list,
                         wire: str) -> None:  # fmt: skip
        self.generator.join_weight_sync(address, rank, world, backend, plan, wire)

    def receive_weights(self) -> dict[str, float]:
        stats = self.generator.receive_weights()
        self._wake_kv_cache()
        return stats

    def pause_generation(self) -> None:
        if self.spec.sleep_between_phases:
            self.generator.sleep()
            self._asleep = True

    def resume_generation(self, model: Any | None = None) -> bool:
        """Weights' memory only: the push that follows fills it, then the KV cache wakes (the order that
        fits beside a learner rank's step on a shared GPU)."""
        if self._asleep:
            free_cuda_cache()
            self.generator.llm.wake_up(tags=["weights"])
            self._asleep, self._kv_asleep = False, True
        return False

    def _wake_kv_cache(self) -> None:
        if self._kv_asleep:
            free_cuda_cache()
            self.generator.llm.wake_up(tags=["kv_cache"])
            self._kv_asleep = False


__all__ = ["VLLMReplica"]
