"""The generation interface every rollout backend implements (transformers on CPU/GPU, vLLM on GPU).

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
    """A rollout backend: `generate` returns, for each prompt, its `n` completions in order."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]: ...


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


def token_budget_batches(lengths: Sequence[int], extra: int, budget: int) -> list[list[int]]:
    """Group request indices into batches whose padded size (rows x (longest + extra)) fits `budget`.

    Requests are sorted longest first, so each batch holds similar lengths and padding stays small.
    A request larger than the budget on its own still gets a batch of one.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if current and (len(current) + 1) * (new_longest + extra) > budget:
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def min_padding_batches(lengths: Sequence[int], budget: int, overhead: int = 128) -> list[list[int]]:
    """Training micro-batches that minimise padded tokens + `overhead` per batch, under `budget`.

    Lengths are sorted longest first and cut into contiguous runs by dynamic programming (a run's
    cost is rows x its longest length); an O(n * rows) search, cheap next to a forward pass.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    sl = [lengths[i] for i in order]
    n = len(sl)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sequences
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):  # last run is order[i:j], its longest is sl[i]
            rows = j - i
            if rows > 1 and rows * sl[i] > budget:
                break
            cost = best[i] + rows * sl[i] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def free_cuda_cache() -> None:
    """Give the caching allocator's free blocks back to the driver (after a step it keeps the step's peak)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
