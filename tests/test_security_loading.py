"""Nothing a downloaded model or a checkpoint folder holds can run code here: weights load from
safetensors only, optimizer state with `weights_only`, model code from the folder only when
`model.trust_remote_code` is on; run and branch names cannot leave the runs directory."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from spell.engine.policy import Policy, PolicySpec
from storage.layout import RunLayout, StorageError


class Payload:
    """Unpickling this writes a marker file: proof that pickled code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _copy(tiny_model_dir: str, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def test_pickled_weights_are_never_loaded(tiny_model_dir, tmp_path):
    model = _copy(tiny_model_dir, tmp_path)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(OSError, match="safetensors"):
        Policy(PolicySpec(model_path=str(model)))
    assert not marker.exists()


def test_pickled_optimizer_state_is_refused(tmp_path):
    from spell.engine.models.checkpoint import load_optimizer_state

    marker = tmp_path / "pwned"
    (tmp_path / "optimizer.pt").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        load_optimizer_state(tmp_path)
    assert not marker.exists()


def test_model_code_runs_only_when_trusted(tiny_model_dir, tmp_path):
    model = _copy(tiny_model_dir, tmp_path)
    marker = tmp_path / "pwned"
    (model / "modeling_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import Qwen2ForCausalLM\nclass EvilForCausalLM(Qwen2ForCausalLM):\n    pass\n"
    )
    cfg = json.loads((model / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (model / "config.json").write_text(json.dumps(cfg))
    try:
        Policy(PolicySpec(model_path=str(model)))  # default: trust_remote_code off
    except Exception as exc:  # transformers may refuse outright; either way the code must not run
        assert "trust_remote_code" in str(exc)
    assert not marker.exists()
    Policy(PolicySpec(model_path=str(model), trust_remote_code=True))  # the control: trusted, the code runs
    assert marker.exists()


@pytest.mark.parametrize("name", ["../up", "a/b", "/abs", "..", ".hidden", "", "x" * 200, "a\nb"])
def test_run_names_cannot_escape(tmp_path, name):
    with pytest.raises(StorageError):
        RunLayout(tmp_path, name)


def test_branch_names_and_symlinked_runs_cannot_escape(tmp_path):
    layout = RunLayout(tmp_path / "runs", "ok")
    with pytest.raises(StorageError):
        layout.iter_dir(1, "../../x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs").mkdir(exist_ok=True)
    (tmp_path / "runs" / "link").symlink_to(outside)
    with pytest.raises(StorageError, match="escapes"):
        RunLayout(tmp_path / "runs", "link")
