"""A run directory that cannot be written, or a disk without room, stops `spell run` before any work."""

from pathlib import Path

import pytest

from spell.cli import main
from spell.config import load_config
from storage.layout import RunLayout, StorageError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "cpu-smoke.yaml")


def test_unwritable_runs_dir_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the runs directory should be")
    rc = main(["run", "--config", CONFIG, "--run", "g", "--set", f"run.runs_dir={blocker / 'runs'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot write to run directory" in err and "Traceback" not in err


def test_full_disk_stops_before_any_work(tmp_path, capsys):
    args = ["--set", f"run.runs_dir={tmp_path}", "--set", "run.min_free_disk_gb=1e9"]
    rc = main(["run", "--config", CONFIG, "--run", "g", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not enough disk space" in err and "run.min_free_disk_gb" in err
    assert not list((tmp_path / "g").glob("iter_*")), "work started although the disk is full"


def test_free_space_counts_room_for_two_checkpoints(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from spell.engine.models.checkpoint import LATEST

    layout = RunLayout(tmp_path, "r")
    ckpt = layout.checkpoints / "iter_0001"
    (ckpt / "model").mkdir(parents=True)
    (ckpt / "state.json").write_text("{}")
    (ckpt / "model" / "model.safetensors").write_bytes(b"\0" * 1000)
    (layout.checkpoints / LATEST).write_text("iter_0001")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**6, 0, 2004))
    layout.check_free_space(0)  # 2 x 1002 bytes needed (weights + state.json)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**6, 0, 2003))
    with pytest.raises(StorageError, match="not enough disk space"):
        layout.check_free_space(0)


def test_iteration_checks_the_disk_first(tmp_path, monkeypatch):
    from flows.iteration import run_iteration

    cfg = load_config(CONFIG, [f"run.runs_dir={tmp_path}", "run.min_free_disk_gb=1e9"])
    with pytest.raises(StorageError):
        run_iteration(cfg)
    assert not list((tmp_path / cfg.run.name).glob("iter_*"))
