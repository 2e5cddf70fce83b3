"""Shared helpers for the benchmark scripts (not a test: prints figures, asserts nothing)."""

from __future__ import annotations

import os
import platform
import tempfile
import time

import torch


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def small_model(hidden: int = 256, layers: int = 4) -> str:
    """A random Qwen2-shaped model big enough that kernels, not Python, dominate on CPU."""
    from spell.engine.models.tiny import build_tiny_model

    path = os.path.join(tempfile.gettempdir(), f"spell-bench-qwen2-h{hidden}-l{layers}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        build_tiny_model(path, hidden_size=hidden, layers=layers, heads=4, kv_heads=2, max_positions=8192)
    return path


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Best wall time of `repeats` runs (after one warm-up) and the last result."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def weight_pass_seconds(model) -> float:
    """One read of every weight tensor: the floor under a decode step, which must stream them all."""
    params = list(model.parameters())

    def run():
        for p in params:
            p.sum()

    t, _ = timed(run, repeats=3)
    return t


def kv_pass_seconds(model, rows: int, context: int) -> float:
    """One read of the KV cache a decode step of `rows` rows over `context` tokens attends to (every layer's
    keys and values, the model's dtype): the part of a step's memory traffic that is not weights."""
    c = model.config
    dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    dtype = next(model.parameters()).dtype
    cache = [torch.randn(rows, c.num_key_value_heads, context, dim).to(dtype) for _ in range(2 * c.num_hidden_layers)]

    def run():
        for t in cache:
            t.sum()

    t, _ = timed(run, repeats=3)
    return t


def default_model(cache_dir: str = "runs/.models") -> str:
    """The model the default preset runs (SmolLM2-135M-Instruct, prepared once from its PyPI package)."""
    from spell.engine.models.packaged import prepare

    return str(prepare("smollm2", cache_dir))


def bench_model(toy: bool, hidden: int = 256) -> str:
    """`--toy`: the random small Qwen2 (seconds); otherwise the default preset's model."""
    return small_model(hidden) if toy else default_model()


def describe(model) -> str:
    c = model.config
    n = sum(p.numel() for p in model.parameters()) / 1e6
    return f"{c.model_type}, {n:.0f}M params, hidden {c.hidden_size}, {c.num_hidden_layers} layers"


def layer_linear_shapes(model) -> list[tuple[int, int]]:
    """(in, out) of every Linear inside the decoder layers (the lm_head and embeddings are separate)."""
    return [
        (m.in_features, m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in f".{name}"
    ]


def forward_flops_per_token(model, context: float, head: bool) -> float:
    """Forward FLOPs of one token: 2 x decoder-layer Linear weights, attention over `context` earlier
    tokens on average (QK^T and AV: 4 x hidden x context per layer), the lm_head where `head`.
    Embedding lookups are not FLOPs and are not counted."""
    c = model.config
    linear = 2 * sum(i * o for i, o in layer_linear_shapes(model))
    attn = (
        4
        * c.num_hidden_layers
        * c.num_attention_heads
        * getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
        * context
    )
    return linear + attn + (2 * c.hidden_size * c.vocab_size if head else 0)


def gemm_rate(model, tokens: int = 1024, repeats: int = 3) -> float:
    """FLOP/s of bare fp32 GEMMs of the model's own layer shapes on `tokens` rows, measured now (the
    machine's matmul limit for this model, the denominator of every 'share of the GEMM limit')."""
    shapes = sorted(set(layer_linear_shapes(model)))
    xs = {i: torch.randn(tokens, i) for i, _ in shapes}
    ws = [(i, torch.randn(i, o)) for i, o in shapes]
    flops = sum(2 * tokens * w.shape[0] * w.shape[1] for _, w in ws)

    def run():
        for i, w in ws:
            xs[i] @ w

    t, _ = timed(run, repeats=repeats)
    return flops / t


def head_rate(model, tokens: int = 256, repeats: int = 3) -> float:
    """FLOP/s of the bare fp32 lm_head GEMM (hidden x vocab), measured now: its shape runs at its own rate."""
    c = model.config
    x, w = torch.randn(tokens, c.hidden_size), torch.randn(c.hidden_size, c.vocab_size)
    t, _ = timed(lambda: x @ w, repeats=repeats)
    return 2 * tokens * c.hidden_size * c.vocab_size / t


def word_prompts(tok, count: int, tokens: int, seed: int = 0) -> list[list[int]]:
    """`count` prompts of about `tokens` tokens of real English (the built-in Wikipedia corpus when present,
    else a fixed word list), rendered with the chat template as the roles' prompts are."""
    import random

    from spell.engine.rollout.interface import render_prompt

    rng = random.Random(seed)
    try:
        from spell.data.corpus import load_corpus

        words = " ".join(
            d for c in list(load_corpus("builtin:wiki").clusters.values())[:50] for d in c.documents
        ).split()
    except Exception:  # a bench falls back to synthetic text
        words = ["the", "bridge", "opened", "in", "1932", "and", "revenue", "grew", "from", "1,200", "to"]
    out = []
    for _ in range(count):
        start = rng.randrange(max(len(words) - 4 * tokens, 1))
        text = " ".join(words[start : start + tokens])
        ids = render_prompt(tok, [{"role": "user", "content": text + "\nQuestion: what is this about?"}])
        out.append(ids[-tokens:] if len(ids) > tokens else ids)
    return out
