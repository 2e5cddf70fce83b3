"""Corpus loading: every bad row is skipped with a reason, the good ones load."""

import json

import pytest

from spell.corpus import CorpusError, load_corpus


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
    corpus = load_corpus(str(path), min_docs=2)
    assert list(corpus.clusters) == ["ok1"]
    reasons = {r["cluster_id"]: r["reason"] for r in corpus.rejects}
    assert reasons["ok1"] == "duplicate cluster_id"
    assert reasons["empty"] == "documents holds empty text"
    assert reasons["nontext"] == "documents holds non-text values"
    assert reasons["nocol"] == "missing column 'documents'"
    assert "unknown task" in reasons["badtask"] and reasons["notlist"] == "documents is not a list"
    assert reasons["few"].startswith("only 1 documents")
    assert any("not JSON" in r["reason"] for r in corpus.rejects)


def test_no_usable_row_is_a_clear_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"cluster_id": "x", "task": "doc_mc", "documents": []}) + "\n")
    with pytest.raises(CorpusError, match="no usable cluster"):
        load_corpus(str(path))
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(str(tmp_path / "missing.jsonl"))
    (tmp_path / "c.csv").write_text("x")
    with pytest.raises(CorpusError, match="unsupported"):
        load_corpus(str(tmp_path / "c.csv"))
