"""Seeded, stratified task sampling of corpus rows (spec Part B §1.1; Part A 'tasks').

Each generation round holds prompts from every task in proportion to its weight; within a task, rows
are drawn without replacement from a seeded permutation that is refilled (re-shuffled) when used up.
The sampler's whole state is the number of rows drawn per task, so it can be rebuilt from artifacts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence


def task_counts(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split n prompts across tasks by weight (largest remainder; ties broken by task name)."""
    active = {t: w for t, w in weights.items() if w > 0}
    total = sum(active.values())
    if n < 0 or total <= 0:
        raise ValueError("need n >= 0 and a positive task weight")
    exact = {t: n * w / total for t, w in active.items()}
    counts = {t: int(v) for t, v in exact.items()}
    left = n - sum(counts.values())
    for t in sorted(active, key=lambda t: (-(exact[t] - counts[t]), t))[:left]:
        counts[t] += 1
    return {t: counts.get(t, 0) for t in weights}


def _seed_for(seed: int, task: str, epoch: int) -> int:
    digest = hashlib.sha256(f"{seed}:{task}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class TaskSampler:
    """Draws corpus row ids per task; `drawn` (rows drawn per task so far) is its entire state."""

    def __init__(
        self,
        rows_by_task: Mapping[str, Sequence[str]],
        weights: Mapping[str, float],
        seed: int = 0,
        drawn: Mapping[str, int] | None = None,
    ):
        self.rows = {t: list(ids) for t, ids in rows_by_task.items()}
        self.weights = {t: float(weights.get(t, 0.0)) for t in self.rows}
        for t, w in self.weights.items():
            if w > 0 and not self.rows[t]:
                raise ValueError(f"task {t!r} has weight {w} but no corpus rows")
        if not any(w > 0 and self.rows[t] for t, w in self.weights.items()):
            raise ValueError("no task has both a positive weight and corpus rows")
        self.seed = seed
        self.drawn = {t: int((drawn or {}).get(t, 0)) for t in self.rows}
        self._perm: dict[str, tuple[int, list[str]]] = {}

    def _permutation(self, task: str, epoch: int) -> list[str]:
        cached = self._perm.get(task)
        if cached is None or cached[0] != epoch:
            ids = list(self.rows[task])
            random.Random(_seed_for(self.seed, task, epoch)).shuffle(ids)
            cached = self._perm[task] = (epoch, ids)
        return cached[1]

    def draw_task(self, task: str, k: int) -> list[str]:
        ids, size = [], len(self.rows[task])
        for _ in range(k):
            epoch, pos = divmod(self.drawn[task], size)
            ids.append(self._permutation(task, epoch)[pos])
            self.drawn[task] += 1
        return ids

    def draw(self, n: int, rng: random.Random | None = None) -> list[tuple[str, str]]:
        """(task, row id) pairs for one generation round, shuffled by `rng` (spec Part A 'tasks').

        The shuffle matters: the batch keeps the first usable groups in id order, so prompts grouped by
        task in a fixed order would starve the last task whenever a round yields more than enough groups.
        """
        counts = task_counts(n, self.weights)
        pairs = [(t, rid) for t, k in counts.items() for rid in self.draw_task(t, k)]
        if rng is not None:
            rng.shuffle(pairs)
        return pairs

    def state(self) -> dict[str, int]:
        return dict(self.drawn)
