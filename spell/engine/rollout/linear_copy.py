"""Decode steps with the Linear layers' matmuls in bf16 and everything else in the model's dtype (issue 26).

At 12 rows a decode step of the default model is its small-M matmuls: measured on this AVX512-BF16 CPU
(bench/decode_step.py), every Linear at M=12 runs 1.9x faster in bf16 (97 vs 52 GFLOP/s) and a greedy step
1.4x (79 vs 112 ms), while a step run wholly in bf16 was slower than fp32 (its attention over the cache is).
So only the matmuls change dtype: norms, rotary, attention and the KV cache stay the model's, and the cache
needs no cast.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F


class CastLinear(torch.nn.Module):
    """A Linear whose matmul runs on a `dtype` copy of its weights; input cast in, output cast back."""

    def __init__(self, source: torch.nn.Linear, dtype: torch.dtype):
        super().__init__()
        self._source = (source,)  # a tuple: not a submodule, so the fp32 weights are not listed twice
        self.register_buffer("weight16", source.weight.detach().to(dtype), persistent=False)
        bias = None if source.bias is None else source.bias.detach().to(dtype)
        self.register_buffer("bias16", bias, persistent=False)

    def refresh(self) -> None:
        source = self._source[0]
        self.weight16.copy_(source.weight)
        if self.bias16 is not None:
            self.bias16.copy_(source.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight16.dtype), self.weight16, self.bias16).to(x.dtype)


class LinearCopy:
    """The model's module tree sharing its parameters, with each Linear a `CastLinear`; `fresh()` re-casts
    the Linear weights from the model's (one pass over them), so the copy never lags the learner. Holds a
    `dtype` copy of the Linear weights only (half their fp32 size in bf16)."""

    def __init__(self, model: Any, dtype: torch.dtype):
        self.model, self.dtype = model, dtype
        self._copy: Any = None
        self._linears: list[CastLinear] = []

    def _build(self) -> Any:
        shared = {id(t): t for t in [*self.model.parameters(), *self.model.buffers()]}
        tree = copy.deepcopy(self.model, memo=shared)  # new modules, the same parameter and buffer tensors
        for module in list(tree.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, torch.nn.Linear):
                    cast = CastLinear(child, self.dtype)
                    setattr(module, name, cast)
                    self._linears.append(cast)
        return tree

    @torch.no_grad()
    def fresh(self) -> Any:
        if self._copy is None:
            self._copy = self._build()
        else:
            for linear in self._linears:
                linear.refresh()
        return self._copy
