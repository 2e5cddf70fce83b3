"""End to end: a tiny random model evaluated on fixture files in each benchmark's own schema."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from spell.eval.benchmarks import BENCHMARKS, MissingBenchmarkData, load_benchmark

pytestmark = [pytest.mark.slow]


def write_fixtures(root: Path) -> None:
    (root / "docmath").mkdir(parents=True)
    (root / "docmath" / "simpshort-testmini.json").write_text(
        json.dumps(
            [
                {
                    "question_id": "dm-1",
                    "question": "What is the change in revenue from 2018 to 2019?",
                    "paragraphs": ["Revenue was 1,200 in 2018.", "Revenue was 1,500 in 2019."],
                    "tables": [],
                    "ground_truth": 300.0,
                },
                {
                    "question_id": "dm-2",
                    "question": "What is the growth rate?",
                    "paragraphs": ["From 10 to 12."],
                    "ground_truth": 20.0,
                },
            ]
        )
    )
    (root / "frames").mkdir()
    with (root / "frames" / "frames.jsonl").open("w") as fh:
        for i in range(2):
            fh.write(
                json.dumps(
                    {
                        "Prompt": f"Which city hosted event {i}?",
                        "Answer": "Lyon",
                        "wiki_items": [{"title": "Lyon", "text": f"Event {i} took place in Lyon."}],
                    }
                )
                + "\n"
            )
    (root / "longbench").mkdir()
    for name in ("hotpotqa", "2wikimqa", "musique"):
        with (root / "longbench" / f"{name}.jsonl").open("w") as fh:
            for i in range(2):
                fh.write(
                    json.dumps(
                        {
                            "_id": f"{name}-{i}",
                            "input": "Who founded Varnholt?",
                            "context": "Passage 1:\nVarnholt was founded by Edda Krone.\n" * 40,
                            "answers": ["Edda Krone"],
                            "length": 400,
                        }
                    )
                    + "\n"
                )
    (root / "longbench-v2").mkdir()
    (root / "longbench-v2" / "data.json").write_text(
        json.dumps(
            [
                {
                    "_id": f"v2-{i}",
                    "domain": "x",
                    "question": "Which is right?",
                    "choice_A": "one",
                    "choice_B": "two",
                    "choice_C": "three",
                    "choice_D": "four",
                    "answer": "B",
                    "context": "Two is right. " * 50,
                    "length": "short",
                }
                for i in range(2)
            ]
        )
    )


def test_loaders_read_each_schema_and_explain_missing_data(tmp_path):
    write_fixtures(tmp_path / "data")
    for b in BENCHMARKS:
        items = load_benchmark(b, tmp_path / "data")
        assert len(items) == 2 and all(it.question and it.golds for it in items), b
    assert load_benchmark("frames", tmp_path / "data")[0].context.startswith("Lyon\n")
    assert load_benchmark("longbench-v2", tmp_path / "data")[0].choices["B"] == "two"
    assert load_benchmark("docmath", tmp_path / "data")[0].golds == ("300.0",)
    with pytest.raises(MissingBenchmarkData, match=r"longbench/musique\.jsonl.*THUDM/LongBench"):
        load_benchmark("musique", tmp_path / "nowhere")


def test_eval_flow_on_tiny_model(prefect_api, tiny_model_dir, tmp_path):
    from flows.eval import spell_eval
    from storage.views import open_history

    write_fixtures(tmp_path / "data")
    ov = [
        f"run.runs_dir={tmp_path / 'runs'}",
        f"eval.data_dir={tmp_path / 'data'}",
        "eval.n_samples=2",
        "eval.max_new_tokens=8",
        "eval.max_input_tokens=256",
        "eval.judge=self",
        "eval.pass_k=[1, 2]",
    ]
    config = str(Path(__file__).resolve().parents[1] / "configs" / "eval-16k.yaml")
    out = spell_eval(model=tiny_model_dir, config=config, name="tiny-eval", overrides=ov)
    d = Path(out["dir"])
    for b in BENCHMARKS:
        samples = pq.read_table(d / f"eval_samples_{b}.parquet").to_pylist()
        assert len(samples) == 2 * 2 and {s["sample"] for s in samples} == {0, 1}
        assert all(s["prompt_tokens"] <= 256 for s in samples)  # middle truncation applied
        assert pq.read_table(d / f"eval_questions_{b}.parquet").num_rows == 2
        assert pq.read_table(d / f"eval_tasks_{b}.parquet").num_rows == 1
        assert b in out["table"]
    assert "Avg (paper)" in out["table"] and (d / "report.md").is_file()
    from storage.layout import RunLayout
    from storage.tracking import Tracker

    assert [
        s for s, _ in Tracker(RunLayout(tmp_path / "runs", "tiny-eval")).metric_history("eval/frames/pass_at_2")
    ] == [0]
    con = open_history(tmp_path / "runs")
    assert con.execute("SELECT count(DISTINCT benchmark) FROM eval_tasks").fetchone()[0] == 6
    assert con.execute("SELECT DISTINCT scorer FROM eval_tasks").fetchall() == [("released",)]  # the default
    assert con.execute("SELECT DISTINCT pass_k_estimator, golds FROM eval_tasks").fetchall() == [("unbiased", "all")]
    assert "pass@k: unbiased" in (d / "report.md").read_text()
