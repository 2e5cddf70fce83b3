"""The generation interfaces: what every rollout backend implements (transformers on CPU/GPU, vLLM on GPU,
scripted), and what every rollout replica answers through Ray.

Prompts in (a plain string = one user turn, a list of chat messages, or token ids) plus sampling
parameters; per completion out: text, token ids, finish reason and prompt token count. A prompt that
does not fit the context window is reported (`finish_reason="prompt_too_long"`), never silently cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

Prompt = str | list[dict[str, str]] | list[int]

FINISH_STOP, FINISH_LENGTH, FINISH_TOO_LONG = "stop", "length", "prompt_too_long"


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling settings; temperature 0 means greedy decoding."""

    n: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = -1
    max_new_tokens: int = 256
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    include_stop: bool = False  # keep the stop string that ended a completion in its text (a closing fence)

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError("n and max_new_tokens must be >= 1")
        if self.temperature < 0 or not (0 < self.top_p <= 1) or self.top_k < -1:
            raise ValueError("need temperature >= 0, 0 < top_p <= 1, top_k >= -1")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingParams:
        d = dict(d)
        if "stop" in d:
            d["stop"] = tuple(d["stop"] or ())
        return cls(**d)


@dataclass
class Completion:
    """One sampled continuation of one prompt (plain Python, so it crosses Ray and Parquet unchanged)."""

    prompt_index: int
    sample_index: int
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(Protocol):
    """A rollout backend (transformers, vLLM, scripted): `generate` returns, for each prompt, its `n`
    completions in order."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]: ...


class RolloutReplica(Protocol):
    """What `RolloutReplicas` calls by name through Ray on each replica actor: a generation-only `Policy`
    (transformers) or a weightless `VLLMReplica`. Both implement all nine; `tests/test_layout.py` checks it."""

    def info(self) -> dict[str, Any]:
        """Backend, pid, start time, spec: the first call, which surfaces construction errors."""
        ...

    def rollout(self, prompts: list[Prompt], params: dict[str, Any] | SamplingParams,
                max_prompt_tokens: int | None = None, prefills: list[str] | None = None,
                role: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """This replica's share of a generation call: one row per prompt (`rows.rollout_rows`)."""
        ...

    def render(self, prompts: list[Prompt]) -> list[list[int]]:
        """The token ids each prompt is generated from (chat template applied)."""
        ...

    def weight_dtype(self) -> str:
        """The dtype its weights are held in; the push casts to it on the wire."""
        ...

    def sync_ranks(self) -> int:
        """Members it adds to the broadcast group (each tensor-parallel worker receives for itself)."""
        ...

    def join_weight_sync(self, address: tuple[str, int], rank: int, world: int, backend: str, plan: list,
                         wire: str) -> None:  # fmt: skip
        """Join the weight-sync group once (`spell.engine.sync.broadcast`); blocks until all have joined."""
        ...

    def receive_weights(self) -> dict[str, float]:
        """Take one push into its weights in place; bytes and seconds."""
        ...

    def pause_generation(self) -> None:
        """Free generation memory for the learner's step (vLLM sleep) where the spec allows."""
        ...

    def resume_generation(self, model: Any | None = None) -> bool:
        """Wake after the step; True when it reloaded weights itself (so no push is needed)."""
        ...


def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of one (prompt, sample) of a call: distinct for every pair, reproducible from `seed`."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_index}:{sample_index}".encode()).digest()[:8], "little")


def render_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a prompt: chat messages (or a string, one user turn) go through the chat template."""
    if isinstance(prompt, list) and (not prompt or isinstance(prompt[0], int)):
        return [int(t) for t in prompt]
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:  # a base model without a template: plain concatenation
        text = "\n\n".join(m["content"] for m in messages)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
