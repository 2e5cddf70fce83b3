"""Token-budget batching, pure and deterministic: generation batches, training micro-batches, packed rows and
the learner ranks' shares of a batch, each grouped longest first so padding stays small."""

from __future__ import annotations

from collections.abc import Sequence


def token_budget_batches(lengths: Sequence[int], extra: int, budget: int) -> list[list[int]]:
    """Group request indices into batches whose padded size (rows x (longest + extra)) fits `budget`.

    Requests are sorted longest first, so each batch holds similar lengths and padding stays small.
    A request larger than the budget on its own still gets a batch of one.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if current and (len(current) + 1) * (new_longest + extra) > budget:
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def min_padding_batches(lengths: Sequence[int], budget: int, overhead: int = 128) -> list[list[int]]:
    """Training micro-batches that minimise padded tokens + `overhead` per batch, under `budget`.

    Lengths are sorted longest first and cut into contiguous runs by dynamic programming (a run's
    cost is rows x its longest length); an O(n * rows) search, cheap next to a forward pass.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    sl = [lengths[i] for i in order]
    n = len(sl)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sequences
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):  # last run is order[i:j], its longest is sl[i]
            rows = j - i
            if rows > 1 and rows * sl[i] > budget:
                break
            cost = best[i] + rows * sl[i] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def pack_first_fit(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Rows of sequence indices whose lengths add up to at most `budget` (first-fit decreasing).

    A sequence longer than the budget gets a row of its own. Deterministic: ties keep input order.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        n = lengths[i]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max(budget - n, 0))
    return rows


def split_by_tokens(lengths: Sequence[int], world: int) -> list[list[int]]:
    """Indices per rank, balanced by tokens: longest first, each to the least-loaded rank (ties: lower
    rank). Deterministic, so a re-applied step after a crash splits the batch the same way."""
    parts: list[list[int]] = [[] for _ in range(world)]
    load = [0] * world
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        r = min(range(world), key=lambda j: (load[j], j))
        parts[r].append(i)
        load[r] += lengths[i]
    return [sorted(p) for p in parts]
