"""Benchmark loaders: each reads local files in the benchmark's own published schema (spec Part B §6.2)
and maps rows to one `EvalItem`. Nothing is downloaded; a missing file gives an error that says which
file is expected where and how to get it.

Expected layout under `eval.data_dir`:

    docmath/{complong,compshort,simplong,simpshort}-testmini.json   yale-nlp/DocMath-Eval (JSON list)
    frames/frames.jsonl (or .parquet)                                 Tongyi-Zhiwen/frames (Prompt, Answer, wiki_items)
    longbench/{hotpotqa,2wikimqa,musique}.jsonl                       THUDM/LongBench (input, context, answers)
    longbench-v2/data.json                                            THUDM/LongBench-v2 (question, choice_A..D, answer)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spell.errors import SpellError

BENCHMARKS = ("docmath", "frames", "hotpotqa", "2wikimqa", "musique", "longbench-v2")
LB_MQA = ("hotpotqa", "2wikimqa", "musique")
DOCMATH_SPLITS = ("complong", "compshort", "simplong", "simpshort")


@dataclass(frozen=True)
class EvalItem:
    item_id: str
    benchmark: str
    context: str
    question: str
    choices: dict[str, str] | None
    golds: tuple[str, ...]


class MissingBenchmarkData(SpellError, FileNotFoundError):
    pass


HOW_TO_GET = {
    "docmath": "the testmini splits of yale-nlp/DocMath-Eval, saved as JSON lists",
    "frames": "Tongyi-Zhiwen/frames (824 rows with Prompt, Answer, wiki_items) as JSONL or Parquet",
    "hotpotqa": "THUDM/LongBench data/hotpotqa.jsonl (the 200-question subset)",
    "2wikimqa": "THUDM/LongBench data/2wikimqa.jsonl",
    "musique": "THUDM/LongBench data/musique.jsonl",
    "longbench-v2": "THUDM/LongBench-v2 data.json (503 questions)",
}


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _first(data_dir: Path, candidates: list[str], benchmark: str) -> Path:
    for c in candidates:
        if (data_dir / c).is_file():
            return data_dir / c
    expected = ", ".join(str(data_dir / c) for c in candidates)
    raise MissingBenchmarkData(f"{benchmark}: no data file; expected one of: {expected}. Get {HOW_TO_GET[benchmark]}.")


def missing_data(name: str, data_dir: str | Path) -> str | None:
    """Why benchmark `name` cannot be loaded from `data_dir` (what to put where), or None when it can."""
    if name not in BENCHMARKS:
        return f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})"
    d = Path(data_dir)
    if name == "docmath":
        files = [d / "docmath" / f"{s}-testmini.json" for s in DOCMATH_SPLITS]
        if not any(f.is_file() for f in files):
            return f"docmath: no data file; expected {', '.join(map(str, files))}. Get {HOW_TO_GET['docmath']}."
        return None
    try:
        _first(d, _CANDIDATES[name](name), name)
    except MissingBenchmarkData as exc:
        return str(exc)
    return None


_CANDIDATES = {
    "frames": lambda n: ["frames/frames.jsonl", "frames/frames.parquet", "frames/test.jsonl"],
    "longbench-v2": lambda n: ["longbench-v2/data.json", "longbench-v2/data.jsonl"],
    **{b: (lambda n: [f"longbench/{n}.jsonl", f"longbench/{n}_e.jsonl"]) for b in LB_MQA},
}


def load_benchmark(name: str, data_dir: str | Path, limit: int | None = None) -> list[EvalItem]:
    d = Path(data_dir)
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    items: list[EvalItem] = []
    if name == "docmath":
        files = [d / "docmath" / f"{s}-testmini.json" for s in DOCMATH_SPLITS]
        if not any(f.is_file() for f in files):
            raise MissingBenchmarkData(
                f"docmath: no data file; expected {', '.join(map(str, files))}. Get {HOW_TO_GET['docmath']}."
            )
        for f in files:
            if not f.is_file():
                continue
            for r in _rows(f):
                context = "\n".join(r.get("paragraphs") or [])
                items.append(
                    EvalItem(str(r["question_id"]), name, context, r["question"], None, (str(r["ground_truth"]),))
                )
    elif name == "frames":
        f = _first(d, _CANDIDATES[name](name), name)
        for i, r in enumerate(_rows(f)):
            wiki = r.get("wiki_items") or []
            if isinstance(wiki, str):
                wiki = json.loads(wiki)
            context = "\n".join(f"{w.get('title', '')}\n{w.get('text', '')}".strip() for w in wiki)
            items.append(
                EvalItem(
                    str(r.get("id", r.get("Unnamed: 0", i))), name, context, r["Prompt"], None, (str(r["Answer"]),)
                )
            )
    elif name in LB_MQA:
        f = _first(d, _CANDIDATES[name](name), name)
        for i, r in enumerate(_rows(f)):
            answers = r["answers"] if isinstance(r["answers"], list) else [r["answers"]]
            items.append(
                EvalItem(str(r.get("_id", i)), name, r["context"], r["input"], None, tuple(str(a) for a in answers))
            )
    else:  # longbench-v2
        f = _first(d, _CANDIDATES[name](name), name)
        for r in _rows(f):
            choices = {k: str(r[f"choice_{k}"]) for k in "ABCD"}
            items.append(EvalItem(str(r["_id"]), name, r["context"], r["question"], choices, (str(r["answer"]),)))
    return items[:limit] if limit else items
