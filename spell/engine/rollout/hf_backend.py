"""`transformers` rollout backend: our own KV-cached decode loop over a Hugging Face causal LM.

The CPU default (and a GPU fallback where vLLM is absent). Two things `model.generate` does not give:
- **one prefill per prompt**: the n samples of a prompt (responder groups, verifier votes, grounding
  samples) share its prompt computation; the KV cache is expanded to n rows after the prefill;
- **a seed per (prompt, sample)**: every row samples from its own generator, so a completion depends on
  its seed alone, not on which prompts share its batch, and identical prompts never share a sample
  (spec Part A 'eval sampling').
Finished rows leave the batch, so a long straggler decodes alone.
With `prefill_dtype=bfloat16` the prompts' forward pass runs on a bf16 copy of the weights, refreshed from the
learner's at every call (`RolloutCopy`), at the CPU's bf16 GEMM rate; the cache is cast back and decoding runs
on the model (bf16 decoding measured slower on this CPU). Tokens differ from fp32 prefill's.
With `decode_dtype=bfloat16` the decode steps' Linear matmuls run on bf16 weights, the rest in the model's dtype
(refreshed per call like the prefill copy). Tokens differ from fp32 decoding's.
With `decode_step="direct"` (the default) a Llama-family model on the CPU decodes through a step written out over
its packed weights, the n samples of a prompt attending to one copy of its cache (`llama_decode`); "model", or a
model it does not fit, decodes through the model's own forward.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from spell.engine.batching import token_budget_batches
from spell.engine.padding import left_padded
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
from spell.engine.rollout.kv_cache import cast_cache, preallocated_cache
from spell.engine.rollout.linear_copy import LinearCopy
from spell.engine.rollout.llama_decode import DecodeWeights, SharedPromptDecoder, unsupported_reason

NUCLEUS_CANDIDATES = 256  # top-p looks at this many of the most likely tokens first (a partial sort)
WIDE_CANDIDATES = 4096  # then, for the rows whose nucleus reaches past those, this many (still cheaper than a sort)
FAST_NUCLEUS = True  # False: every sample draws over the whole vocabulary (the sampler before; benches)


def _ranked(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's k most likely tokens (a partial sort; the full sort where k is the vocabulary): their logits,
    their ids, and each one's share of the row's whole probability mass."""
    full = k >= logits.shape[-1]
    ordered, idx = torch.sort(logits, dim=-1, descending=True) if full else torch.topk(logits, k, dim=-1)
    return ordered, idx, torch.exp(ordered - torch.logsumexp(logits, dim=-1, keepdim=True))


def _past_nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Ranked tokens outside the nucleus: those whose higher-ranked tokens already hold top_p of the mass."""
    return probs.cumsum(-1) - probs >= top_p


def nucleus(
    logits: torch.Tensor, temperature: float, top_p: float, top_k: int, candidates: int = NUCLEUS_CANDIDATES
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(weights, token ids, fits): each row's top-p nucleus among its `candidates` most likely tokens
    ([rows, candidates], weights zero outside it) and whether it lies there ([rows]; a flat row's reaches
    past them), or None where `filter_logits` decides every row (no top-p, a top-k cut, a small vocabulary).
    Drawing from a fitting row's weights is drawing from `filter_logits`' distribution, with one random
    number per candidate instead of one per vocabulary entry, so a seed gives other tokens than the full draw."""
    vocab = logits.shape[-1]
    if top_p >= 1.0 or 0 < top_k < vocab or vocab <= candidates:
        return None
    _, idx, probs = _ranked(logits.float() / temperature, candidates)
    return probs.masked_fill(_past_nucleus(probs, top_p), 0.0), idx, probs.sum(-1) >= top_p


def filter_logits(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (the smallest set whose probability reaches top_p; at least
    the most likely token), as fp32 logits with the removed tokens at -inf.

    The nucleus is found among the `NUCLEUS_CANDIDATES` most likely tokens (`topk`, a partial sort) when they
    hold top_p of every row's mass, which is the same set a full sort finds; otherwise by the full sort."""
    logits = logits.float() / temperature
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        k = min(NUCLEUS_CANDIDATES, vocab)
        ordered, idx, probs = _ranked(logits, k)
        if k < vocab and bool((probs.sum(-1) < top_p).any()):  # a row's nucleus reaches past the candidates
            ordered, idx, probs = _ranked(logits, vocab)
        ordered = ordered.masked_fill(_past_nucleus(probs, top_p), float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, ordered)
    return logits


class RolloutCopy:
    """A copy of the model in a cheaper compute dtype, its weights re-cast from the model's at every `fresh()`
    (one pass over the weights, tens of ms at 135M), so it never lags the learner. Buffers (rotary
    frequencies) keep their dtype. Autocast, the other way to get bf16, re-casts every weight at every
    decode step; this casts once per generate call."""

    def __init__(self, model: Any, dtype: torch.dtype):
        self.model, self.dtype = model, dtype
        self._copy: Any = None
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def fresh(self) -> Any:
        with torch.no_grad():
            if self._copy is None:
                grads = {id(p): p.grad for p in self.model.parameters()}
                for p in self.model.parameters():
                    p.grad = None  # not copied
                try:
                    self._copy = copy.deepcopy(self.model)
                finally:
                    for p in self.model.parameters():
                        p.grad = grads[id(p)]
                for p in self._copy.parameters():
                    p.requires_grad_(False)
                    p.data = p.data.to(self.dtype)
                self._pairs = list(zip(self.model.parameters(), self._copy.parameters(), strict=True))
            else:
                for src, dst in self._pairs:
                    dst.copy_(src)
        return self._copy


class TransformersGenerator:
    """Generation with a Hugging Face causal LM that the caller owns (the learner trains the same weights)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        token_budget: int = 16384,
        max_context: int | None = None,
        compute_dtype: torch.dtype | None = None,
        share_prefill: bool = True,
        preallocate: bool = True,
        prefill_dtype: torch.dtype | None = None,
        decode_dtype: torch.dtype | None = None,
        decode_step: str = "direct",
    ):
        self.model, self.tokenizer, self.token_budget = model, tokenizer, token_budget
        self.share_prefill = share_prefill  # False: each sample prefills its own copy (the layout before; benches)
        self.preallocate = preallocate  # False: the library's concatenating cache (the layout before; benches)
        # fp32 master weights generate under autocast; one autocast region casts each weight once per call
        self.compute_dtype = None if compute_dtype in (None, torch.float32) else compute_dtype
        master = next(model.parameters()).dtype
        # engine.prefill_dtype: a bf16 copy prefills (refreshed per call); None or the model's own: the model
        self.prefill_copy = RolloutCopy(model, prefill_dtype) if prefill_dtype not in (None, master) else None
        # engine.decode_dtype: decode steps' Linear matmuls on a bf16 copy of those weights (refreshed per call)
        linear_dtype = decode_dtype if decode_dtype not in (None, master) else None
        # engine.decode_step: the written-out step where it fits the model (it then holds the Linear weights)
        direct = decode_step == "direct" and self.compute_dtype is None and unsupported_reason(model) is None
        self.direct = DecodeWeights(model, linear_dtype) if direct else None
        self.decode_copy = LinearCopy(model, linear_dtype) if linear_dtype and not direct else None
        cfg_ctx = getattr(model.config, "max_position_embeddings", None)
        limit = int(cfg_ctx or 1 << 30)
        self.max_context = min(int(max_context), limit) if max_context else limit
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        self.prefill_tokens = 0  # prompt tokens computed, for bench/generation.py (one per unique prompt token)
        self.prefill_seconds = self.decode_seconds = 0.0  # wall time of prefills, of decode steps (benches)
        self.decode_steps = 0  # batched decode steps taken (each samples, then runs the model on one token a row)
        # transformers renamed `past_key_values` to `cache` (the old name warns from 5.2x, goes in 5.40)
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Completion]]:
        rendered = [render_prompt(self.tokenizer, p) for p in prompts]
        results: list[list[Completion]] = [[] for _ in prompts]
        todo = []
        for pi, ids in enumerate(rendered):
            if len(ids) + params.max_new_tokens > self.max_context:
                results[pi] = [Completion(pi, si, "", [], FINISH_TOO_LONG, len(ids)) for si in range(params.n)]
            else:
                todo.append(pi)
        # the KV cache holds n rows per prompt: batch prompts so that n x rows x (longest + new) fits the budget
        lengths = [len(rendered[pi]) for pi in todo]
        batches = token_budget_batches(lengths, params.max_new_tokens, max(self.token_budget // params.n, 1))
        was_training = self.model.training
        self.model.eval()
        prefill_net = self.model if self.prefill_copy is None else self.prefill_copy.fresh().eval()
        decode_net = self.model if self.decode_copy is None else self.decode_copy.fresh().eval()
        if self.direct is not None:
            decode_net = self.direct.refresh()  # re-read from the learner's weights, as the copies are
        try:
            with self._autocast():
                for batch in batches:
                    pis = [todo[i] for i in batch]
                    rows = self._generate_batch(prefill_net, decode_net, [rendered[pi] for pi in pis], pis, params)
                    for pi, comps in zip(pis, rows, strict=True):
                        results[pi] = comps
                    if progress is not None:
                        progress(len(pis) * params.n)
        finally:
            self.model.train(was_training)
            if self.direct is not None:
                self.direct.release()  # re-packed at the next call anyway (the weights will have changed)
        return results

    def _generators(self, prompt_indices: Sequence[int], params: SamplingParams) -> list[torch.Generator] | None:
        if params.temperature <= 0:
            return None
        gens = []
        for pi in prompt_indices:
            for si in range(params.n):
                seed = row_seed(params.seed, pi, si) if params.seed is not None else int(torch.randint(2**62, ()))
                gens.append(torch.Generator(self.device).manual_seed(seed))
        return gens

    def _sample(self, logits: torch.Tensor, params: SamplingParams, gens: list[torch.Generator] | None) -> torch.Tensor:
        if gens is None:
            return logits.argmax(-1)
        picks: dict[int, torch.Tensor] = {}
        todo = list(range(len(gens)))  # rows not drawn yet
        for k in (NUCLEUS_CANDIDATES, WIDE_CANDIDATES) if FAST_NUCLEUS else ():
            found = nucleus(logits[todo] if len(todo) < len(gens) else logits, params.temperature, params.top_p,
                            params.top_k, k)  # fmt: skip
            if found is None:
                break
            weights, idx, fits = found  # a fitting row draws among its nucleus: the same distribution, fewer draws
            wide = []
            for j, (i, ok) in enumerate(zip(todo, fits.tolist(), strict=True)):
                if ok:
                    picks[i] = idx[j, torch.multinomial(weights[j], 1, generator=gens[i])]
                else:
                    wide.append(i)
            todo = wide
            if not todo:
                break
        if todo:  # the rows whose nucleus reaches past every candidate list draw over the whole vocabulary
            probs = torch.softmax(filter_logits(logits[todo], params.temperature, params.top_p, params.top_k), -1)
            for i, row in zip(todo, probs, strict=True):
                picks[i] = torch.multinomial(row, 1, generator=gens[i])
        return torch.cat([picks[i] for i in range(len(gens))])

    def _generate_batch(
        self,
        prefill_net: Any,
        decode_net: Any,
        batch_ids: list[list[int]],
        prompt_indices: list[int],
        params: SamplingParams,
    ) -> list[list[Completion]]:
        """Prefill the unique prompts once (left-padded), expand the cache to n rows each, then decode."""
        dev, n = self.device, params.n
        copies = 1 if self.share_prefill else n
        if copies > 1:
            batch_ids = [ids for ids in batch_ids for _ in range(copies)]
        input_ids, attn, pos = (t.to(dev) for t in left_padded(batch_ids, self.pad_id))
        width = input_ids.shape[1]
        cache_kw = {}
        direct = isinstance(decode_net, DecodeWeights)  # decodes from its own buffers: no room needed here
        room = 0 if direct else params.max_new_tokens
        if self.preallocate and (cache := preallocated_cache(self.model.config, room)) is not None:
            cache_kw[self._cache_kw] = cache  # written in place at each step (spell.engine.rollout.kv_cache)
        # the bf16 copy's head gets its last positions as a gathered (contiguous) tensor: sliced, bf16 matmul
        # expands the head's weight once per row (1.4 s a batch of the default model); fp32 keeps today's slice
        keep: int | torch.Tensor = 1 if self.prefill_copy is None else torch.tensor([width - 1], device=dev)
        started = time.perf_counter()
        out = prefill_net(input_ids=input_ids.to(dev), attention_mask=attn, position_ids=pos, use_cache=True,
                                logits_to_keep=keep, **cache_kw)  # fmt: skip
        self.prefill_tokens += sum(len(ids) for ids in batch_ids)
        self.prefill_seconds += (decoding := time.perf_counter()) - started
        cache, logits, last = getattr(out, self._cache_kw), out.logits[:, -1, :], pos[:, -1]
        if self.prefill_copy is not None:
            cast_cache(cache, next(self.model.parameters()).dtype)  # the model decodes from the copy's cache
        state = None
        if direct:  # the prompts' keys and values once each; the n samples attend to them together
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            state = SharedPromptDecoder(decode_net, kv, attn, 1 if copies > 1 else n, params.max_new_tokens)
        if copies > 1:
            batch_ids = batch_ids[::copies]
        elif n > 1:
            if state is None:
                cache.batch_repeat_interleave(n)
                attn = attn.repeat_interleave(n, 0)
            logits, last = logits.repeat_interleave(n, 0), last.repeat_interleave(n)
        gens = self._generators(prompt_indices, params)
        alive = list(range(len(batch_ids) * n))  # row -> (prompt row // n, sample row % n)
        tokens: list[list[int]] = [[] for _ in alive]
        finish: list[str] = [FINISH_LENGTH] * len(alive)
        for step in range(params.max_new_tokens):
            nxt = self._sample(logits, params, None if gens is None else [gens[r] for r in alive])
            keep = []
            for j, (r, t) in enumerate(zip(alive, nxt.tolist(), strict=True)):
                tokens[r].append(t)
                if t in self.eos_ids or (params.stop and self._hit_stop(tokens[r], params.stop)):
                    finish[r] = FINISH_STOP
                elif step + 1 < params.max_new_tokens:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(alive):  # finished rows leave the batch and the cache
                idx = torch.tensor(keep, device=dev)
                if state is not None:
                    state.keep(idx)
                else:
                    cache.batch_select_indices(idx)
                    attn = attn[idx]
                last, nxt = last[idx], nxt[idx]
                alive = [alive[j] for j in keep]
            last = last + 1
            if state is not None:
                logits = state.step(nxt, last)
            else:
                attn = torch.cat([attn, attn.new_ones((len(alive), 1))], dim=1)
                kw = {self._cache_kw: cache}
                out = decode_net(input_ids=nxt[:, None], attention_mask=attn, position_ids=last[:, None],
                                 use_cache=True, **kw)  # fmt: skip
                logits = out.logits[:, -1, :]
            self.decode_steps += 1
        self.decode_seconds += time.perf_counter() - decoding
        return [
            [self._finish(tokens[b * n + si], finish[b * n + si], pi, si, len(ids), params) for si in range(n)]
            for b, (pi, ids) in enumerate(zip(prompt_indices, batch_ids, strict=True))
        ]

    def _hit_stop(self, tokens: list[int], stop: Sequence[str]) -> bool:
        text = self.tokenizer.decode(tokens[-16:], skip_special_tokens=True)  # a stop string ends in the tail
        return any(s in text for s in stop)

    def _finish(
        self, tokens: list[int], finish: str, pi: int, si: int, prompt_len: int, params: SamplingParams
    ) -> Completion:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        hits = [(text.find(s), len(s)) for s in params.stop if s in text]
        if hits:
            at, size = min(hits)
            text = text[: at + (size if params.include_stop else 0)]
        return Completion(pi, si, text, tokens, finish, prompt_len)
