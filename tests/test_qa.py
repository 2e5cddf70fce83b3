"""Labelled QA loaders on the real samples in ../shared/data (skipped where that folder is absent)."""

import json
from pathlib import Path

import pytest

from spell.data.qa import load_labelled_qa

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _need(rel: str) -> Path:
    p = DATA / rel
    if not p.is_file():
        pytest.skip(f"{p} not found: the shared data folder is not on this machine")
    return p


def test_hotpotqa_distractor_format():
    items = load_labelled_qa(_need("hotpotqa/hotpotqa_train_100.json"))
    assert len(items) == 100 and all(len(i.documents) >= 2 for i in items)
    assert items[0].task == "doc_general_qa" and items[0].golds == ("a spirit",)


def test_musique_with_aliases():
    items = load_labelled_qa(_need("musique/musique_train_100.json"))
    assert items and all(i.golds for i in items)
    assert any(len(i.golds) > 1 for i in items)  # answer aliases kept as extra golds


def test_tatqa_arithmetic_questions_become_docmath():
    items = load_labelled_qa(_need("tatqa/tatqa_dataset_dev.json"), limit=50)
    assert len(items) == 50 and all(i.task == "docmath_qa" for i in items)
    assert " | " in items[0].documents[0]  # the table, as text


def test_generic_jsonl_and_unknown_schema(tmp_path):
    good = tmp_path / "qa.jsonl"
    good.write_text(json.dumps({"id": "x", "documents": ["d"], "question": "q?", "answer": ["a", "b"]}) + "\n")
    assert load_labelled_qa(good)[0].golds == ("a", "b")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(ValueError, match="no known QA schema"):
        load_labelled_qa(bad)
    with pytest.raises(FileNotFoundError):
        load_labelled_qa(tmp_path / "missing.json")
