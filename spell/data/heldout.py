"""Short-context held-out sets for the learning experiments (issue 25), built from the shared QA samples: a
135M model can read a supporting paragraph or two, not a ten-document cluster.

- `musique_single_hop`: each step of a MuSiQue question's decomposition, with `#k` replaced by step k's
  answer and a relation step ("X >> performer") asked as "What is the performer of X?", over the one
  paragraph that supports it (100 questions give 237 steps);
- `hotpot_gold`: HotpotQA questions over their two gold paragraphs, yes/no answers dropped (91 of 100);
- `tatqa_text_spans`: TAT-QA span answers taken from the text, over the paragraphs they cite (349).

Every item is general QA scored by cover exact match against its gold (and aliases where the set has them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from spell.data.qa import LabelledQA
from spell.vocab import GENERAL_QA


def musique_single_hop(path: str | Path) -> list[LabelledQA]:
    out = []
    for row in json.loads(Path(path).read_text(encoding="utf-8")):
        paragraphs = {p["idx"]: f"{p['title']}\n{p['paragraph_text']}" for p in row["paragraphs"]}
        answers: list[str] = []
        for k, step in enumerate(row["question_decomposition"]):
            question = re.sub(r"#(\d+)", lambda m, known=answers: known[int(m.group(1)) - 1], step["question"])
            answers.append(str(step["answer"]))
            if ">>" in question:  # a relation step, "Hello Love >> performer": asked as a question
                entity, relation = (s.strip() for s in question.split(">>", 1))
                question = f"What is the {relation} of {entity}?"
            doc = paragraphs.get(step["paragraph_support_idx"])
            if doc is None:
                continue
            qid = f"{row['id']}-s{k}"
            out.append(LabelledQA(qid, GENERAL_QA, (doc,), question.strip(), (str(step["answer"]),)))
    return out


def hotpot_gold(path: str | Path) -> list[LabelledQA]:
    out = []
    for row in json.loads(Path(path).read_text(encoding="utf-8")):
        if str(row["answer"]).strip().lower() in ("yes", "no"):
            continue
        gold = {title for title, _ in row["supporting_facts"]}
        docs = tuple(f"{t}\n{''.join(s)}".strip() for t, s in row["context"] if t in gold)
        out.append(LabelledQA(str(row["_id"]), GENERAL_QA, docs, row["question"], (str(row["answer"]),)))
    return out


def tatqa_text_spans(path: str | Path) -> list[LabelledQA]:
    out = []
    for doc in json.loads(Path(path).read_text(encoding="utf-8")):
        paragraphs = {str(p["order"]): p["text"] for p in doc["paragraphs"]}
        for q in doc["questions"]:
            if q.get("answer_type") != "span" or q.get("answer_from") != "text":
                continue
            answer = q["answer"][0] if isinstance(q["answer"], list) else q["answer"]
            docs = tuple(paragraphs[i] for i in q.get("rel_paragraphs", []) if i in paragraphs)
            if docs and str(answer).strip():
                out.append(LabelledQA(str(q["uid"]), GENERAL_QA, docs, q["question"], (str(answer),)))
    return out


HELD_OUT = {
    "musique_single_hop": ("musique/musique_train_100.json", musique_single_hop),
    "hotpot_gold": ("hotpotqa/hotpotqa_train_100.json", hotpot_gold),
    "tatqa_text_spans": ("tatqa/tatqa_dataset_dev.json", tatqa_text_spans),
}


def held_out(data_dir: str | Path) -> dict[str, list[LabelledQA]]:
    """Every held-out set whose file is under `data_dir` (the shared data folder); absent ones are left out."""
    return {
        name: load(Path(data_dir) / rel) for name, (rel, load) in HELD_OUT.items() if (Path(data_dir) / rel).is_file()
    }
