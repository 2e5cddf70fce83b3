"""A KV cache written in place (issue 26): each layer's keys and values live in one buffer sized for the
prompt plus every new token, and a decode step writes its token there instead of concatenating a new copy
of the whole cache (`DynamicCache` copies every layer's keys and values at every step: about a fifth of a
decode step of the default model on a CPU). Attention sees views of the filled part, so its results are the
dynamic cache's exactly."""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """`DynamicLayer`'s contract (views of [batch, heads, length, head_dim]), stored in a buffer with room for
    `extra` more tokens than its first update brings; past that room it grows by doubling."""

    def __init__(self, extra: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.extra = extra
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self._k = self._buffer(key_states, key_states.shape[-2] + self.extra)
        self._v = self._buffer(value_states, value_states.shape[-2] + self.extra)
        self.length = 0
        self.is_initialized = True

    @staticmethod
    def _buffer(like: torch.Tensor, size: int) -> torch.Tensor:
        b, h, _, d = like.shape
        return torch.empty((b, h, size, d), dtype=like.dtype, device=like.device)

    def _grow(self, need: int) -> None:
        assert self._k is not None and self._v is not None
        size = max(need, 2 * self._k.shape[-2])
        for name in ("_k", "_v"):
            old = getattr(self, name)
            new = self._buffer(old, size)
            new[..., : self.length, :] = old[..., : self.length, :]
            setattr(self, name, new)

    def _views(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._k is not None and self._v is not None
        self.keys, self.values = self._k[..., : self.length, :], self._v[..., : self.length, :]
        return self.keys, self.values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self._k is not None and self._v is not None
        q = key_states.shape[-2]
        if self.length + q > self._k.shape[-2]:
            self._grow(self.length + q)
        self._k[..., self.length : self.length + q, :] = key_states
        self._v[..., self.length : self.length + q, :] = value_states
        self.length += q
        return self._views()

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if self.is_initialized and tokens_to_remove:
            self.length = max(0, self.length + tokens_to_remove)
            self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            assert self._k is not None and self._v is not None
            self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            assert self._k is not None and self._v is not None
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

    def reset(self) -> None:
        self._k = self._v = None
        self.length = 0
        self.is_initialized = False  # before super(): nothing of ours for it to zero
        super().reset()


def preallocated_cache(config: Any, extra: int) -> Cache | None:
    """A cache of `PreallocatedLayer`s for a model whose layers all attend fully, or None (sliding-window or
    hybrid models keep the library's own cache)."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"} or getattr(cfg, "use_sliding_window", False):
        return None
    return Cache(layers=[PreallocatedLayer(extra) for _ in range(cfg.num_hidden_layers)])


def cast_cache(cache: Cache, dtype: torch.dtype) -> None:
    """Every layer's keys and values in `dtype`, in place (a bf16 prefill's cache for an fp32 decode)."""
    for layer in cache.layers:
        if isinstance(layer, PreallocatedLayer):
            if layer._k is not None and layer._v is not None:
                layer._k, layer._v = layer._k.to(dtype), layer._v.to(dtype)
                layer._views()
        elif getattr(layer, "keys", None) is not None:
            layer.keys, layer.values = layer.keys.to(dtype), layer.values.to(dtype)
