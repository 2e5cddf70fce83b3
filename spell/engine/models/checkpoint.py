"""Checkpoints: a Hugging Face safetensors model folder plus optimizer, RNG and learner state.

Layout of `<root>/step_<k>/`: `model/` (config, safetensors weights, tokenizer; loadable by
`AutoModelForCausalLM.from_pretrained`), `optimizer.pt` (tensors only, loaded with weights_only=True),
`rng.json`, `state.json`. A checkpoint is written under a temporary name and renamed when complete;
`<root>/LATEST` names the newest complete one and is itself replaced atomically, so an interrupted
write never becomes the latest checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spell.files import atomic_write_text

LATEST = "LATEST"


def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": _jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.random.get_rng_state().tolist(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_tupled(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.random.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _tupled(x: Any) -> Any:
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def save_checkpoint(
    root: str | Path,
    name: str,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write `<root>/<name>/` completely, then point LATEST at it. Returns the checkpoint folder.

    `extra(folder)` adds more to the folder before it is published (a sharded learner's DCP shards)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "rng.json").write_text(json.dumps(capture_rng()))
    (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str))
    if extra is not None:
        extra(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(root / LATEST, name)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    return path if (path / "model").is_dir() and (path / "state.json").is_file() else None


def load_optimizer_state(path: str | Path) -> dict[str, Any] | None:
    f = Path(path) / "optimizer.pt"
    return torch.load(f, map_location="cpu", weights_only=True) if f.is_file() else None


def read_state(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
