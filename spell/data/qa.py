"""Labelled QA files (documents, question, gold answers): the static RLVR baseline's data and held-out
sets for learning benchmarks. Each published schema maps to one record.

Schemas read: HotpotQA distractor format (`context` = [[title, [sentences]]]), MuSiQue (`paragraphs`
with `paragraph_text`, `answer_aliases`), TAT-QA (`table` + `paragraphs` + `questions`; arithmetic
answers become DocMath-style numeric QA), and generic JSONL rows `{documents, question, answer, task}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spell.vocab import DOCMATH, GENERAL_QA


@dataclass(frozen=True)
class LabelledQA:
    qa_id: str
    task: str
    documents: tuple[str, ...]
    question: str
    golds: tuple[str, ...]


def _hotpot(row: dict[str, Any]) -> list[LabelledQA]:
    docs = tuple(f"{title}\n{''.join(sents)}".strip() for title, sents in row["context"])
    return [LabelledQA(str(row["_id"]), GENERAL_QA, docs, row["question"], (str(row["answer"]),))]


def _musique(row: dict[str, Any]) -> list[LabelledQA]:
    if str(row.get("answerable", True)) == "False":
        return []
    docs = tuple(f"{p['title']}\n{p['paragraph_text']}" for p in row["paragraphs"])
    golds = (str(row["answer"]), *[str(a) for a in row.get("answer_aliases") or []])
    return [LabelledQA(str(row["id"]), GENERAL_QA, docs, row["question"], golds)]


def _table_text(table: list[list[str]]) -> str:
    return "\n".join(" | ".join(str(c).strip() for c in r) for r in table)


def _tatqa(row: dict[str, Any]) -> list[LabelledQA]:
    docs = (
        _table_text(row["table"]["table"]),
        *[p["text"] for p in sorted(row["paragraphs"], key=lambda p: p["order"])],
    )
    out = []
    for q in row["questions"]:
        if q.get("answer_type") != "arithmetic":
            continue  # numeric DocMath-style questions only: spans are not a DocMath task
        ans = q["answer"]
        if isinstance(ans, list) or ans in ("", None):
            continue
        out.append(LabelledQA(str(q["uid"]), DOCMATH, docs, q["question"], (str(ans),)))
    return out


def _generic(row: dict[str, Any], i: int) -> list[LabelledQA]:
    ans = row["answer"]
    golds = tuple(str(a) for a in ans) if isinstance(ans, list) else (str(ans),)
    return [
        LabelledQA(str(row.get("id", i)), row.get("task", GENERAL_QA), tuple(row["documents"]), row["question"], golds)
    ]


def load_labelled_qa(path: str | Path, limit: int | None = None) -> list[LabelledQA]:
    """Read a labelled QA file in any of the supported schemas (detected from the first row)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"labelled QA file not found: {p}")
    text = p.read_text(encoding="utf-8")
    rows = (
        json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    )
    out: list[LabelledQA] = []
    for i, row in enumerate(rows):
        if "supporting_facts" in row and "context" in row:
            out += _hotpot(row)
        elif "paragraphs" in row and ("question_decomposition" in row or "answer_aliases" in row):
            out += _musique(row)
        elif "table" in row and "questions" in row:
            out += _tatqa(row)
        elif {"documents", "question", "answer"} <= set(row):
            out += _generic(row, i)
        else:
            raise ValueError(f"{p}: row {i} matches no known QA schema (keys {sorted(row)[:8]})")
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out
