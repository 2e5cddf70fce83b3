"""History memory: per (task, cluster) FIFO of the last L solved questions (paper §3.2, Alg. 1).

The memory is a pure value rebuilt from plain rows (`to_rows` / `from_rows`), so a resumed or
replayed run can reconstruct exactly the memory it had from its stored artifacts.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spell.rewards import history_admits
from spell.text import normalize_answer


@dataclass(frozen=True)
class HistoryEntry:
    """One remembered question: the docs behind it, the question and its reference answer.

    `doc_indices` are the *new* docs of that visit ('paper' context) or every doc shown ('cumulative').
    For MC, `question` is the block with choices and `answer` the letter.
    """

    question: str
    answer: str
    doc_indices: tuple[int, ...]
    iteration: int = 0


@dataclass(frozen=True)
class QuestionerContext:
    """What the questioner is shown on one visit: doc indices (original order) and history examples."""

    doc_indices: tuple[int, ...]
    new_doc_indices: tuple[int, ...]
    examples: tuple[HistoryEntry, ...]


class HistoryMemory:
    """Per (task, cluster) deque of at most `size` entries, FIFO eviction, normalised-question dedup."""

    def __init__(self, size: int = 3, admit: str = "paper", context: str = "paper", dedup: bool = True):
        if size < 1:
            raise ValueError("history size must be >= 1")
        self.size, self.admit_rule, self.context_mode, self.dedup = size, admit, context, dedup
        self._mem: dict[tuple[str, str], deque[HistoryEntry]] = {}

    def entries(self, task: str, cluster_id: str) -> tuple[HistoryEntry, ...]:
        return tuple(self._mem.get((task, cluster_id), ()))

    def __len__(self) -> int:
        return sum(len(d) for d in self._mem.values())

    def admit(self, task: str, cluster_id: str, entry: HistoryEntry, mean_reward: float) -> bool:
        """Add `entry` if its responder group's mean reward passes the admission rule; True if added."""
        if not history_admits(mean_reward, self.admit_rule):
            return False
        return self.add(task, cluster_id, entry)

    def add(self, task: str, cluster_id: str, entry: HistoryEntry) -> bool:
        """Add unconditionally (apart from dedup); the oldest entry is evicted when full."""
        slot = self._mem.setdefault((task, cluster_id), deque(maxlen=self.size))
        if self.dedup:
            key = normalize_answer(entry.question)
            if any(normalize_answer(e.question) == key for e in slot):
                return False
        slot.append(entry)
        return True

    def context(self, task: str, cluster_id: str, n_docs: int, m: int, rng: random.Random) -> QuestionerContext:
        """Docs for the next questioner visit (spec Part A 'questioner context').

        First visit: m random docs. Later visits: the docs behind the remembered entries plus m new ones
        drawn from those not yet behind any entry; always sorted into original order.
        """
        examples = self.entries(task, cluster_id)
        remembered = sorted({i for e in examples for i in e.doc_indices if 0 <= i < n_docs})
        unused = [i for i in range(n_docs) if i not in set(remembered)]
        new = sorted(rng.sample(unused, min(m, len(unused))))
        shown = tuple(sorted(set(remembered) | set(new)))
        return QuestionerContext(shown, tuple(new), examples)

    def entry_docs(self, ctx: QuestionerContext) -> tuple[int, ...]:
        """The doc indices to store with an entry made from this context, by context mode."""
        return ctx.new_doc_indices if self.context_mode == "paper" else ctx.doc_indices

    # -- plain rows, for storage -------------------------------------------------------------------

    def to_rows(self) -> list[dict]:
        rows = []
        for (task, cluster_id), slot in sorted(self._mem.items()):
            for pos, e in enumerate(slot):
                rows.append(
                    {
                        "task": task,
                        "cluster_id": cluster_id,
                        "position": pos,
                        "question": e.question,
                        "answer": e.answer,
                        "doc_indices": list(e.doc_indices),
                        "iteration": e.iteration,
                    }
                )
        return rows

    @classmethod
    def from_rows(
        cls, rows: Iterable[dict], size: int = 3, admit: str = "paper", context: str = "paper", dedup: bool = True
    ) -> HistoryMemory:
        """Rebuild from `to_rows` output; rows are re-added in (task, cluster, position) order."""
        mem = cls(size=size, admit=admit, context=context, dedup=dedup)
        for r in sorted(rows, key=lambda r: (r["task"], str(r["cluster_id"]), int(r["position"]))):
            mem.add(r["task"], str(r["cluster_id"]), _entry(r))
        return mem

    @classmethod
    def replay(
        cls, events: Sequence[dict], size: int = 3, admit: str = "paper", context: str = "paper", dedup: bool = True
    ) -> HistoryMemory:
        """Rebuild by replaying admission candidates in their original order (each row carries
        task, cluster_id, question, answer, doc_indices, iteration and mean_reward)."""
        mem = cls(size=size, admit=admit, context=context, dedup=dedup)
        for r in events:
            mem.admit(r["task"], str(r["cluster_id"]), _entry(r), float(r["mean_reward"]))
        return mem


def _entry(r: dict) -> HistoryEntry:
    return HistoryEntry(
        question=str(r["question"]),
        answer=str(r["answer"]),
        doc_indices=tuple(int(i) for i in r["doc_indices"]),
        iteration=int(r.get("iteration", 0)),
    )
