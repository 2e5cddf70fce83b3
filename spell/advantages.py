"""Group-relative advantages (GRPO; paper Eq. 8-9, spec Part A 'advantages').

Responder: z-score within the G answers of a question. Verifier: within the votes on one answer.
Questioner: z-score over the questioner samples of the same task in the batch (or the whole batch).
Standard deviations are unbiased (n-1); eps keeps a zero-variance group at advantage 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

EPS = 1e-6


def group_zscore(rewards: Sequence[float] | np.ndarray, eps: float = EPS) -> np.ndarray:
    """(r - mean) / (std_unbiased + eps); a group of one (or all equal) gets zeros, never NaN."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        return r
    if r.size == 1:
        return np.zeros_like(r)
    std = float(r.std(ddof=1))
    return (r - r.mean()) / (std + eps)


def grouped_zscore(rewards: Sequence[float] | np.ndarray, groups: Sequence[Hashable], eps: float = EPS) -> np.ndarray:
    """Z-score each reward within its group; order is preserved."""
    r = np.asarray(rewards, dtype=np.float64)
    if len(groups) != r.size:
        raise ValueError(f"{r.size} rewards but {len(groups)} group keys")
    out = np.zeros_like(r)
    index: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    for members in index.values():
        out[members] = group_zscore(r[members], eps)
    return out


def questioner_advantages(
    rewards: Sequence[float] | np.ndarray, tasks: Sequence[str], normalize: str = "task", eps: float = EPS
) -> np.ndarray:
    """Questioner advantages: per task (official code, default) or over the whole batch (paper Eq. 9)."""
    if normalize == "task":
        return grouped_zscore(rewards, tasks, eps)
    if normalize == "batch":
        return group_zscore(rewards, eps)
    raise ValueError(f"unknown questioner.normalize {normalize!r}")
