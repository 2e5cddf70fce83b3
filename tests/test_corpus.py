"""Corpus loading: every bad row is skipped with a reason, the good ones load."""

import json

import pytest

from spell.data.clusters import CorpusError
from spell.data.corpus import load_corpus


def test_bad_rows_are_rejected_with_reasons(tmp_path):
    rows = [
        {"cluster_id": "ok1", "task": "doc_mc", "documents": ["a", "b"]},
        {"cluster_id": "ok1", "task": "doc_mc", "documents": ["c"]},
        {"cluster_id": "empty", "task": "doc_mc", "documents": ["a", "  "]},
        {"cluster_id": "nontext", "task": "doc_mc", "documents": ["a", 3]},
        {"cluster_id": "nocol", "task": "doc_mc"},
        {"cluster_id": "badtask", "task": "poetry", "documents": ["a"]},
        {"cluster_id": "notlist", "task": "doc_mc", "documents": "a"},
        {"cluster_id": "few", "task": "docmath_qa", "documents": ["one"]},
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    corpus = load_corpus(str(path))
    # Part A 'questioner context': a bad document is dropped on its own, a small cluster is used as it is
    assert list(corpus.clusters) == ["ok1", "empty", "nontext", "few"]
    assert corpus.clusters["empty"].documents == ("a",) and corpus.clusters["few"].documents == ("one",)
    reasons = {(r["cluster_id"], r["doc_index"]): r["reason"] for r in corpus.rejects}
    assert reasons[("ok1", -1)] == "duplicate cluster_id"
    assert reasons[("empty", 1)] == "empty document" and ("empty", -1) not in reasons
    assert reasons[("nontext", 1)] == "document is not text (int)"
    assert reasons[("nocol", -1)] == "missing column 'documents'"
    assert "unknown task" in reasons[("badtask", -1)] and reasons[("notlist", -1)] == "documents is not a list"
    assert not any(c == "few" for c, _ in reasons)
    assert any("not JSON" in r["reason"] for r in corpus.rejects)


def test_no_usable_row_is_a_clear_error(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"cluster_id": "x", "task": "doc_mc", "documents": []}, {"cluster_id": "y", "task": "doc_mc",
            "documents": ["", 4]}]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(CorpusError, match="no usable cluster"):
        load_corpus(str(path))
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(str(tmp_path / "missing.jsonl"))
    (tmp_path / "c.csv").write_text("x")
    with pytest.raises(CorpusError, match="unsupported"):
        load_corpus(str(tmp_path / "c.csv"))


def _corpus(tmp_path, rows):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return load_corpus(str(path))


def test_long_documents_are_dropped_and_thin_clusters_rejected(tmp_path):
    from spell.data.corpus import drop_long_documents

    corpus = _corpus(
        tmp_path,
        [
            {"cluster_id": "a", "task": "doc_mc", "documents": ["short", "x" * 50, "also short"]},
            {"cluster_id": "b", "task": "doc_mc", "documents": ["short", "y" * 50]},
            {"cluster_id": "c", "task": "doc_mc", "documents": ["short", "z" * 12]},
        ],
    )
    counted: list[str] = []

    def count(texts):
        counted.extend(texts)
        return [len(t) // 2 for t in texts]  # a tokenizer with 2 bytes per token

    out = drop_long_documents(corpus, 10, count, min_docs=2)
    assert sorted(counted) == sorted(["x" * 50, "y" * 50, "z" * 12])  # only documents over 10 bytes are counted
    assert out.clusters["a"].documents == ("short", "also short") and out.clusters["c"] == corpus.clusters["c"]
    assert "b" not in out.clusters
    assert [(r["cluster_id"], r["doc_index"]) for r in out.rejects] == [("a", 1), ("b", 1), ("b", -1)]
    assert out.rejects[0]["reason"] == "document of 25 tokens > responder.max_prompt_tokens=10"
    assert drop_long_documents(corpus, 100, count) is corpus


def test_enough_good_rows_continue_too_few_stop(tmp_path):
    from spell.data.corpus import require_usable

    tasks = ["doc_mc", "doc_general_qa"]
    good = [{"cluster_id": f"g{i}", "task": t, "documents": ["a", "b"]} for i, t in enumerate(tasks)]
    bad = [{"cluster_id": f"b{i}", "task": "doc_mc", "documents": ["", " "]} for i in range(3)]
    corpus = _corpus(tmp_path, good + bad)
    weights = {"doc_mc": 1.0, "doc_general_qa": 1.0, "docmath_qa": 0.0}
    require_usable(corpus, weights, max_reject_share=0.6)  # 3 of 5 bad: allowed
    with pytest.raises(CorpusError, match=r"3 of 5 rows rejected .*3 x no usable document"):
        require_usable(corpus, weights, max_reject_share=0.5)
    with pytest.raises(CorpusError, match=r"data\.task_weights\.docmath_qa=0"):
        require_usable(corpus, {**weights, "docmath_qa": 1.0}, max_reject_share=1.0)
