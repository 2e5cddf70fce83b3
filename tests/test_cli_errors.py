"""Everywhere a user can err, one line on stderr and exit code 2, nothing left behind; progress that reads
well in a log (no carriage returns when the output is not a terminal)."""

import io
from pathlib import Path

import pytest

from spell.cli import main

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "cpu-smoke.yaml")


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("spell: ") and "Traceback" not in err, (rc, err)
    return err


def test_history_errors_are_one_line(capsys, tmp_path):
    (tmp_path / "r1").mkdir()
    assert "no runs directory" in _err(capsys, ["history", "--runs-dir", str(tmp_path / "none")])
    assert "no run 'zz'" in _err(capsys, ["history", "--runs-dir", str(tmp_path), "--run", "zz"])
    err = _err(capsys, ["history", "--runs-dir", str(tmp_path), "SELEC 1"])
    assert err.startswith("spell: SQL: Parser Error") and len(err.splitlines()) < 6  # DuckDB's own message


def test_run_errors_are_one_line_and_start_nothing(capsys, tmp_path):
    (tmp_path / "other").mkdir()
    err = _err(capsys, ["run", "--config", CONFIG, "--run", "ghost", "--resume", "--runs-dir", str(tmp_path)])
    assert "no iteration" in err and "runs there: other" in err
    assert not (tmp_path / "ghost").exists()
    assert "run.name" in _err(capsys, ["run", "--config", CONFIG, "--run", "../escape", "--runs-dir", str(tmp_path)])
    assert "config file not found" in _err(capsys, ["run", "--config", str(tmp_path / "nope.yaml")])
    assert "config file not found" in _err(capsys, ["deploy", "--config", str(tmp_path / "nope.yaml")])


def test_ui_mlflow_says_what_to_install(capsys, tmp_path):
    assert "no MLflow store" in _err(capsys, ["ui", "mlflow", "--runs-dir", str(tmp_path)])
    (tmp_path / "mlflow.db").write_bytes(b"")
    import importlib.util

    if importlib.util.find_spec("flask") is None:  # the dev environment has mlflow-skinny only
        assert "pip install 'spell[ui]'" in _err(capsys, ["ui", "mlflow", "--runs-dir", str(tmp_path)])


@pytest.mark.slow
def test_eval_names_every_missing_benchmark_before_loading_anything(prefect_api, tmp_path):
    from flows.eval import spell_eval
    from spell.eval.benchmarks import MissingBenchmarkData

    data = tmp_path / "data"
    (data / "longbench").mkdir(parents=True)
    (data / "longbench" / "hotpotqa.jsonl").write_text("")
    with pytest.raises(MissingBenchmarkData) as info:  # the CLI prints it as one line, exit 2
        spell_eval(model="tiny:qwen2", benchmarks=["hotpotqa", "musique", "frames"], name="ev",
                   runs_dir=str(tmp_path / "runs"), overrides=[f"eval.data_dir={data}"])  # fmt: skip
    err = str(info.value)
    assert "2 of 3 benchmarks" in err and "musique" in err and "frames" in err and "hotpotqa:" not in err
    assert "\n" not in err
    assert not (tmp_path / "runs" / "ev").exists()  # no empty results folder, no model loaded


def test_progress_writes_lines_not_bars_into_logs():
    from spell.progress import Progress

    out = io.StringIO()  # not a terminal
    with Progress(40, "eval hotpotqa", unit="question", stream=out) as bar:
        for _ in range(40):
            bar.update(1, "rule score 50.0%")
    text = out.getvalue()
    assert "\r" not in text and text.count("\n") == 11  # the start, then every 10%
    assert text.splitlines()[-1] == "eval hotpotqa: 40/40 questions, rule score 50.0%"
