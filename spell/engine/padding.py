"""Left padding of token rows, the one layout both a batched prefill and the learner's padded rows take."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def left_padded(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, positions) of token rows padded on the left to the longest: every row's last
    token in the last column, positions counting its own tokens only."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], attn[i, width - len(row) :] = torch.tensor(row, dtype=torch.long), 1
    return ids, attn, (attn.cumsum(-1) - 1).clamp(min=0)
