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
    from spell.engine.tiny import build_tiny_model

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
