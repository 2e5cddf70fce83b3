"""Decode steps of a Llama-family model (Llama, Qwen2) written out over its weights, for the transformers
backend on CPU (issue 26; `engine.decode_step=direct`).

A decode step of the default model at 12 rows is ~210 Linear calls at M=12 plus attention over the cache.
Measured on this CPU (bench/decode_step.py): MKL's fp32 GEMM runs those matmuls at about a quarter of the
CPU's peak, oneDNN's kernel over weights packed for it (`torch.ops.mkldnn._linear_pointwise`, the kernel
inductor's CPU path calls) twice as fast, q/k/v and gate/up fused into one matmul each. And each of a
prompt's n samples (the responder's G) reads its own copy of the prompt's cache through the model's forward;
here the samples' queries attend to one copy, stacked as one matrix per KV head (as GQA's query groups are).
The step computes the model's forward in another summation order: fp32 rounding apart, the same logits
(tests bound the difference).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "qwen2")  # model types whose decoder layer this module writes out
ROPE_TYPES = ("default", "linear", "llama3")  # rotary frequencies that do not move with the sequence length
FEW_QUERIES = 4  # a prompt's queries (n samples x query group) up to which its values are kept transposed


@functools.cache
def packed_kernel_works(dtype: torch.dtype) -> bool:
    """Whether this build's oneDNN runs a packed-weight Linear in `dtype` and gets F.linear's answer."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    try:
        w, x = torch.randn(16, 8, dtype=dtype), torch.randn(3, 8, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w), None, "none", [], "")
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        return bool(torch.allclose(y.float(), F.linear(x, w).float(), atol=tol, rtol=tol))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def unsupported_reason(model: Any) -> str | None:
    """Why the written-out step cannot stand in for this model's forward, or None where it can."""
    cfg = model.config
    if cfg.model_type not in FAMILIES:
        return f"model type {cfg.model_type!r} is not one of {FAMILIES}"
    params = list(model.parameters())
    if any(p.device.type != "cpu" for p in params):
        return "the model is not on the CPU"
    if any(type(p.data) is not torch.Tensor for p in params):  # DTensor (FSDP2) and other subclasses
        return "the model's weights are sharded or wrapped"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return "the model is not a plain causal LM (a LoRA wrapper?)"
    if any(isinstance(m, torch.nn.Linear) and type(m) is not torch.nn.Linear for m in model.modules()):
        return "a Linear layer is wrapped (LoRA adapters)"
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "pretraining_tp", 1) not in (None, 1):
        return "the MLP is not a SiLU-gated one"
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"} or getattr(cfg, "use_sliding_window", False):
        return "a layer attends over a sliding window"
    rope = getattr(inner, "rotary_emb", None)
    if rope is None or getattr(rope, "rope_type", "default") not in ROPE_TYPES:
        return f"rotary embedding type {getattr(rope, 'rope_type', None)!r} is not one of {ROPE_TYPES}"
    return None


class DecodeLinear:
    """A Linear for decode steps: its weight packed for oneDNN where that kernel works, else kept as is; a
    `dtype` other than the input's casts the input in and the output back (engine.decode_dtype)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        self.dtype = dtype
        w = weight.detach().to(dtype)
        self.packed = packed_kernel_works(dtype)
        self.weight = torch.ops.mkldnn._reorder_linear_weight(w) if self.packed else w.contiguous()
        self.bias = None if bias is None else bias.detach().to(dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(self.dtype)
        if self.packed:
            out = torch.ops.mkldnn._linear_pointwise(y, self.weight, self.bias, "none", [], "")
        else:
            out = F.linear(y, self.weight, self.bias)
        return out.to(x.dtype)


def _fused(linears: list[torch.nn.Linear], dtype: torch.dtype) -> DecodeLinear:
    weight = torch.cat([lin.weight.detach() for lin in linears])
    bias = None
    if any(lin.bias is not None for lin in linears):  # Qwen2's q/k/v
        zero = linears[0].weight.new_zeros
        bias = torch.cat([zero(lin.out_features) if lin.bias is None else lin.bias.detach() for lin in linears])
    return DecodeLinear(weight, bias, dtype)


class DecodeWeights:
    """The model's weights as the written-out step reads them, re-read from the model at every `refresh()`
    (the learner changes them between generate calls): one packed copy of every Linear weight, dropped by
    `release()` so that it is not held through the GRPO step."""

    def __init__(self, model: Any, linear_dtype: torch.dtype | None = None):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the written-out decode step does not fit this model: {reason}")
        self.model = model
        self.linear_dtype = linear_dtype or next(model.parameters()).dtype
        cfg = model.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers: list[tuple[Any, ...]] = []
        self.head: DecodeLinear | None = None

    @torch.no_grad()
    def refresh(self) -> DecodeWeights:
        inner, dt = self.model.model, self.linear_dtype
        self.release()  # the old copy goes before the new one is made
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            norm1, norm2 = layer.input_layernorm, layer.post_attention_layernorm
            self.layers.append((
                norm1.weight.detach(), float(norm1.variance_epsilon),
                _fused([att.q_proj, att.k_proj, att.v_proj], dt), DecodeLinear(att.o_proj.weight, att.o_proj.bias, dt),
                norm2.weight.detach(), float(norm2.variance_epsilon),
                _fused([mlp.gate_proj, mlp.up_proj], dt), DecodeLinear(mlp.down_proj.weight, mlp.down_proj.bias, dt),
            ))  # fmt: skip
        self.head = DecodeLinear(self.model.lm_head.weight, self.model.lm_head.bias, dt)
        self.scaling = float(inner.layers[0].self_attn.scaling)
        self.intermediate = inner.layers[0].mlp.gate_proj.out_features
        self.embed = inner.embed_tokens.weight.detach()
        self.norm, self.norm_eps = inner.norm.weight.detach(), float(inner.norm.variance_epsilon)
        self.inv_freq = inner.rotary_emb.inv_freq.detach().float()
        self.rope_scale = float(inner.rotary_emb.attention_scaling)
        return self

    def release(self) -> None:
        self.layers, self.head = [], None


class SharedPromptDecoder:
    """One batch's decode state after its prefill: each prompt's keys and values once ([prompts x kv_heads,
    prompt_len, head_dim], from the prefill's cache, left-padded; the values transposed where a prompt's
    queries are few, as the probabilities-times-values product then runs faster as V^T P^T: measured 1.5x at 3
    queries, 0.7x at 12), the samples' own tokens' keys and values in [prompts, kv_heads, n, max_new,
    head_dim], and which slot (prompt x n + sample) each live row is. Finished rows leave by `keep`; their
    slots stay until half the slots are dead, then the state is compacted."""

    def __init__(self, w: DecodeWeights, prompt_kv: list[tuple[torch.Tensor, torch.Tensor]],
                 attention_mask: torch.Tensor, n: int, max_new: int):  # fmt: skip
        self.w, self.n = w, n
        self.prompts, width = attention_mask.shape
        rows = self.prompts * w.kv_heads
        self.kp = [k.reshape(rows, width, w.head_dim) for k, _ in prompt_kv]
        self.v_transposed = n * (w.heads // w.kv_heads) <= FEW_QUERIES
        vp = [v.reshape(rows, width, w.head_dim) for _, v in prompt_kv]
        self.vp = [v.transpose(1, 2).contiguous() for v in vp] if self.v_transposed else vp
        pad = torch.zeros(attention_mask.shape, dtype=self.kp[0].dtype, device=attention_mask.device)
        bias = pad.masked_fill(attention_mask == 0, float("-inf"))  # [P, Lp]
        self.bias = bias.repeat_interleave(w.kv_heads, 0)[:, None, :]  # [P x kv, 1, Lp]
        shape = (self.prompts, w.kv_heads, n, max(max_new, 1), w.head_dim)
        self.kg = [self.kp[0].new_zeros(shape) for _ in self.kp]
        self.vg = [self.kp[0].new_zeros(shape) for _ in self.kp]
        self.slots = torch.arange(self.prompts * n)  # live row -> its slot
        self._slots_on = self.slots.to(attention_mask.device)
        self.dense = True  # every slot live: rows are slots, nothing to scatter or gather
        self.steps = 0  # tokens fed so far: the next one's column in kg / vg

    def keep(self, rows: torch.Tensor) -> None:
        """Only these live rows (indices into the live rows, in order) go on."""
        self.slots = self.slots[rows.cpu()]
        if 2 * len(self.slots) <= self.prompts * self.n:
            self._compact()
        self.dense = len(self.slots) == self.prompts * self.n
        self._slots_on = self.slots.to(self._slots_on.device)

    def _compact(self) -> None:
        live = torch.unique(torch.div(self.slots, self.n, rounding_mode="floor"))  # sorted prompts with a live row
        remap = torch.full((self.prompts,), -1, dtype=torch.long)
        remap[live] = torch.arange(len(live))
        self.slots = remap[self.slots // self.n] * self.n + self.slots % self.n
        kvh = self.w.kv_heads
        flat = (live[:, None] * kvh + torch.arange(kvh)).flatten().to(self.bias.device)  # their kv-head rows
        for parts, index in ((self.kp, flat), (self.vp, flat), (self.kg, live), (self.vg, live)):
            parts[:] = [t.index_select(0, index.to(t.device)) for t in parts]
        self.bias = self.bias.index_select(0, flat)
        self.prompts = len(live)

    def _scatter(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, ...] -> [slots, ...] (dead slots zero)."""
        if self.dense:
            return x
        return x.new_zeros((self.prompts * self.n, *x.shape[1:])).index_copy_(0, self._slots_on, x)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Feed each live row its token at its position; the next-token logits, [rows, vocab], fp32."""
        w, rows = self.w, tokens.shape[0]
        kvh, dim, heads = w.kv_heads, w.head_dim, w.heads
        freqs = positions[:, None].float() * w.inv_freq
        emb = torch.cat((freqs, freqs), -1)
        h = F.embedding(tokens, w.embed)
        cos = (emb.cos() * w.rope_scale)[:, None, :].to(h.dtype)
        sin = (emb.sin() * w.rope_scale)[:, None, :].to(h.dtype)
        half = dim // 2
        for li, (n1, e1, qkv, out, n2, e2, gate_up, down) in enumerate(w.layers):
            x = qkv(F.rms_norm(h, (h.shape[-1],), n1, e1)).view(rows, heads + 2 * kvh, dim)
            qk = x[:, : heads + kvh]
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin
            q = self._scatter(qk[:, :heads] * w.scaling)  # [slots, heads, dim]
            k, v = self._scatter(qk[:, heads:]), self._scatter(x[:, heads + kvh :])  # [slots, kv_heads, dim]
            att = self._attend(li, q, k, v)
            if not self.dense:
                att = att.index_select(0, self._slots_on)
            h = h + out(att)
            g = gate_up(F.rms_norm(h, (h.shape[-1],), n2, e2))
            h = h + down(F.silu(g[:, : w.intermediate]) * g[:, w.intermediate :])
        self.steps += 1
        assert w.head is not None
        return w.head(F.rms_norm(h, (h.shape[-1],), w.norm, w.norm_eps)).float()

    def _attend(self, li: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Layer li's attention for every slot ([slots, heads x dim]): a prompt's n samples x its query group
        are one matrix against the prompt's keys (one read of them), and each sample's own tokens apart; one
        softmax over both parts."""
        n, p_count, t, w = self.n, self.prompts, self.steps, self.w
        kvh, dim = w.kv_heads, w.head_dim
        group = w.heads // kvh
        kg, vg = self.kg[li], self.vg[li]
        kg[:, :, :, t].copy_(k.view(p_count, n, kvh, dim).transpose(1, 2))
        vg[:, :, :, t].copy_(v.view(p_count, n, kvh, dim).transpose(1, 2))
        qg = q.view(p_count, n, kvh, group, dim).transpose(1, 2).contiguous()  # [P, kv, n, group, dim]
        own_k = kg[:, :, :, : t + 1].reshape(p_count * kvh * n, t + 1, dim)  # views: the slice keeps rows apart
        own_v = vg[:, :, :, : t + 1].reshape(p_count * kvh * n, t + 1, dim)
        prompt_scores = torch.bmm(qg.view(p_count * kvh, n * group, dim), self.kp[li].transpose(1, 2))
        own_scores = torch.bmm(qg.view(p_count * kvh * n, group, dim), own_k.transpose(1, 2))
        own_scores = own_scores.view(p_count * kvh, n * group, t + 1)
        probs = torch.softmax(torch.cat([prompt_scores + self.bias, own_scores], -1), dim=-1)
        lp = prompt_scores.shape[-1]
        if self.v_transposed:  # [P x kv, n x group, dim] either way
            att = torch.bmm(self.vp[li], probs[..., :lp].transpose(1, 2)).transpose(1, 2)
        else:
            att = torch.bmm(probs[..., :lp], self.vp[li])
        own = probs[..., lp:].reshape(p_count * kvh * n, group, t + 1)
        att = att + torch.bmm(own, own_v).view(p_count * kvh, n * group, dim)
        return att.view(p_count, kvh, n, group, dim).transpose(1, 2).reshape(p_count * n, w.heads * dim)
