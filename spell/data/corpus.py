"""Loading the corpus the questioner and responder read (paper §4.1, App. E.1), in the format of
`spell.data.clusters`. Bad rows are skipped and recorded with a reason, never silently dropped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from spell.data.clusters import (
    BUILTIN_SMOKE,
    BUILTIN_WIKI,
    Cluster,
    Corpus,
    CorpusError,
    bad_document,
    read_cluster_rows,
    row_problem,
)
from spell.data.synthetic import synthetic_rows

WIKI_DOCS, WIKI_CLUSTER_SIZE = 1200, 6


def builtin_wiki(cache_dir: str | Path, seed: int = 0) -> Path:
    """The clustered builtin:wiki corpus, built once with `spell corpus build` settings for a CPU demo."""
    from spell.data.build import BuildSettings, build_corpus

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
        rows = read_cluster_rows(path)
    clusters: dict[str, Cluster] = {}
    rejects: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        cid = str(row.get("cluster_id", f"<row {i}>")) if isinstance(row, dict) else f"<row {i}>"
        reason = row_problem(row, clusters)
        if reason:
            rejects.append({"row": i, "cluster_id": cid, "doc_index": -1, "reason": reason})
            continue
        docs = []
        for j, d in enumerate(row["documents"]):
            why = bad_document(d)
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


def corpus_from_qa(path: str) -> Corpus:
    """A corpus for the static RLVR baseline: each labelled QA item is a cluster holding its documents."""
    from spell.data.qa import load_labelled_qa

    items = load_labelled_qa(path)
    if not items:
        raise CorpusError(f"{path}: no usable labelled QA item")
    clusters = {it.qa_id: Cluster(it.qa_id, it.task, it.documents) for it in items}
    return Corpus(clusters, qa={it.qa_id: it for it in items}, rows_read=len(items), source=path)
