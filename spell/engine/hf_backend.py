"""`transformers` rollout backend: batched, left-padded, KV-cached `generate`, batches sized by tokens.

The CPU default (and a GPU fallback where vLLM is absent). Deterministic under a seed: the same
prompts, parameters and seed give the same completions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from spell.engine.generation import (
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOO_LONG,
    Completion,
    Prompt,
    SamplingParams,
    render_prompt,
    token_budget_batches,
)


def _batch_seed(seed: int, batch_no: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{batch_no}".encode()).digest()[:4], "little")


class TransformersGenerator:
    """Generation with a Hugging Face causal LM that the caller owns (the learner trains the same weights)."""

    def __init__(self, model: Any, tokenizer: Any, token_budget: int = 16384, max_context: int | None = None):
        self.model, self.tokenizer, self.token_budget = model, tokenizer, token_budget
        cfg_ctx = getattr(model.config, "max_position_embeddings", None)
        self.max_context = int(max_context or cfg_ctx or 1 << 30)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Completion]]:
        rendered = [render_prompt(self.tokenizer, p) for p in prompts]
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        requests: list[tuple[int, int]] = []
        for pi, ids in enumerate(rendered):
            if len(ids) + params.max_new_tokens > self.max_context:
                for si in range(params.n):
                    results[pi][si] = Completion(pi, si, "", [], FINISH_TOO_LONG, len(ids))
                continue
            requests += [(pi, si) for si in range(params.n)]

        lengths = [len(rendered[pi]) for pi, _ in requests]
        batches = token_budget_batches(lengths, params.max_new_tokens, self.token_budget)
        was_training = self.model.training
        self.model.eval()
        rng_state = torch.random.get_rng_state()
        try:
            for batch_no, batch in enumerate(batches):
                reqs = [requests[i] for i in batch]
                if params.seed is not None:
                    torch.manual_seed(_batch_seed(params.seed, batch_no))
                for (pi, si), comp in zip(
                    reqs, self._generate_batch([rendered[pi] for pi, _ in reqs], params), strict=True
                ):
                    comp.prompt_index, comp.sample_index = pi, si
                    results[pi][si] = comp
                if progress is not None:
                    progress(len(reqs))
        finally:
            torch.random.set_rng_state(rng_state)
            self.model.train(was_training)
        return [[c for c in row if c is not None] for row in results]

    def _generate_batch(self, batch_ids: list[list[int]], params: SamplingParams) -> list[Completion]:
        device = next(self.model.parameters()).device
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
            use_cache=True,
        )
        if params.temperature > 0:
            kwargs.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else None,
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        new_tokens = out[:, width:].tolist()
        return [self._finish(tokens, len(ids), params) for tokens, ids in zip(new_tokens, batch_ids, strict=True)]

    def _finish(self, tokens: list[int], prompt_len: int, params: SamplingParams) -> Completion:
        for i, t in enumerate(tokens):
            if t in self.eos_ids:
                kept = tokens[: i + 1]
                return Completion(
                    -1, -1, self.tokenizer.decode(kept, skip_special_tokens=True), kept, FINISH_STOP, prompt_len
                )
        if params.stop:
            # A row ended by a stop string is padded while the rest of its batch goes on.
            while tokens and tokens[-1] == self.pad_id:
                tokens = tokens[:-1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        hits = [text.find(s) for s in params.stop if s in text]
        if hits:
            return Completion(-1, -1, text[: min(hits)], tokens, FINISH_STOP, prompt_len)
        return Completion(-1, -1, text, tokens, FINISH_LENGTH, prompt_len)
