"""vLLM rollout backend (GPU; `pip install 'spell[gpu]'`), same interface as the transformers backend.

vLLM runs in the policy's own process (colocated with the learner), with its V1 multiprocessing off so
the model object is reachable; after each GRPO step `sync_weights` streams the learner's weights into
it through the model's `load_weights`, without a restart. Imported lazily: nothing here loads on CPU.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from spell.engine.generation import (
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOO_LONG,
    Completion,
    Prompt,
    SamplingParams,
    render_prompt,
)


class VLLMGenerator:
    """Wraps `vllm.LLM`, built from a snapshot of the learner's weights."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_context: int | None = None,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
    ):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm
        except ImportError as exc:
            raise ImportError("engine.backend=vllm needs vLLM on a GPU machine: pip install 'spell[gpu]'") from exc
        self.tokenizer = tokenizer
        self.max_context = int(max_context or getattr(model.config, "max_position_embeddings", 32768))
        snapshot = tempfile.mkdtemp(prefix="spell-vllm-")
        model.save_pretrained(snapshot, safe_serialization=True)
        tokenizer.save_pretrained(snapshot)
        self.llm = vllm.LLM(
            model=snapshot,
            dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
            max_model_len=self.max_context,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
        )
        self._vllm = vllm

    def _runner_model(self) -> Any:
        engine = self.llm.llm_engine
        for path in (
            "model_executor.driver_worker.worker.model_runner.model",
            "model_executor.driver_worker.model_runner.model",
        ):
            obj: Any = engine
            try:
                for attr in path.split("."):
                    obj = getattr(obj, attr)
                return obj
            except AttributeError:
                continue
        raise RuntimeError("cannot reach the vLLM model to load new weights (vLLM version changed?)")

    def sync_weights(self, model: Any) -> None:
        """Push the learner's current weights into vLLM (full weights; merged when LoRA is on)."""
        source = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        self._runner_model().load_weights(((n, p.detach()) for n, p in source.state_dict().items()))
        self.llm.reset_prefix_cache()

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        rendered = [render_prompt(self.tokenizer, p) for p in prompts]
        results: list[list[Completion]] = [[] for _ in prompts]
        todo = []
        for pi, ids in enumerate(rendered):
            if len(ids) + params.max_new_tokens > self.max_context:
                results[pi] = [Completion(pi, si, "", [], FINISH_TOO_LONG, len(ids)) for si in range(params.n)]
            else:
                todo.append(pi)
        sp = self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
        )
        outs = self.llm.generate([{"prompt_token_ids": rendered[pi]} for pi in todo], sp, use_tqdm=False)
        for pi, out in zip(todo, outs, strict=True):
            results[pi] = [
                Completion(
                    pi,
                    si,
                    o.text,
                    list(o.token_ids),
                    FINISH_LENGTH if o.finish_reason == "length" else FINISH_STOP,
                    len(rendered[pi]),
                )
                for si, o in enumerate(out.outputs)
            ]
        return results
