"""Where a run's files live, and the per-iteration manifest that makes stages skippable and resumable."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from spell.errors import SpellError
from spell.files import sha256_file
from storage.io import write_json

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ITER_DIR = re.compile(r"^iter_(\d{4})$")


class StorageError(SpellError, ValueError):
    pass


def safe_name(name: str, what: str = "run name") -> str:
    """Run names become directory names: letters, digits, '_', '.', '-' only, so none escapes runs/."""
    if not isinstance(name, str) or not _SAFE.match(name) or ".." in name:
        raise StorageError(f"invalid {what} {name!r}: use letters, digits, '_', '.', '-' (no path separators)")
    return name


def file_digest(path: Path) -> str:
    return sha256_file(path)[:16]


def stage_of(key: str) -> str:
    """Manifest key -> stage name: 'respond_r02' -> 'respond', 'grpo_step' -> 'grpo_step'."""
    head, sep, rnd = key.rpartition("_r")
    return head if sep and len(rnd) == 2 and rnd.isdigit() else key


class RunLayout:
    """Paths of one run under the runs directory."""

    def __init__(self, runs_dir: str | Path, run: str):
        self.runs_dir = Path(runs_dir).resolve()
        self.run = safe_name(run)
        self.root = self.runs_dir / self.run
        if self.runs_dir not in self.root.resolve().parents:
            raise StorageError(f"run directory {self.root} escapes {self.runs_dir}")

    def iter_name(self, k: int, branch: str = "") -> str:
        return f"iter_{k:04d}" + (f".{safe_name(branch, 'branch')}" if branch else "")

    def iter_dir(self, k: int, branch: str = "") -> Path:
        return self.root / self.iter_name(k, branch)

    def next_branch(self, k: int) -> str:
        """The first free `replay<n>` of iteration k (where `spell replay` writes next)."""
        n = 1
        while self.iter_dir(k, f"replay{n}").exists():
            n += 1
        return f"replay{n}"

    def stage_file(self, k: int, kind: str, rnd: int | None = None, branch: str = "") -> Path:
        suffix = f"_r{rnd:02d}" if rnd is not None else ""
        return self.iter_dir(k, branch) / f"{kind}{suffix}.parquet"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def iterations(self) -> list[int]:
        """Main-line iteration numbers that have a directory, ascending (replay branches excluded)."""
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := ITER_DIR.match(p.name)))

    def completed_iterations(self) -> list[int]:
        return [k for k in self.iterations() if Manifest(self.iter_dir(k)).complete]

    def next_iteration(self) -> int:
        """The first main-line iteration that is not complete (resume continues there)."""
        done = set(self.completed_iterations())
        k = 1
        while k in done:
            k += 1
        return k

    def check_writable(self) -> None:
        """Fail before any work when the run directory cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"cannot write to run directory {self.root}: {exc.strerror or exc}") from None

    def check_free_space(self, min_free_gb: float) -> None:
        """Fail before any work when the disk cannot hold this iteration: `min_free_gb` plus two
        checkpoints the size of the newest (the new one is written beside the old before the swap)."""
        from spell.engine.models.checkpoint import latest_checkpoint

        newest = latest_checkpoint(self.checkpoints)
        ckpt = sum(f.stat().st_size for f in newest.rglob("*") if f.is_file()) if newest else 0
        need = int(min_free_gb * 2**30) + 2 * ckpt
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free < need:
            raise StorageError(
                f"not enough disk space under {self.root}: {_size(free)} free, {_size(need)} needed "
                f"(run.min_free_disk_gb={min_free_gb} + 2 x the newest checkpoint, {_size(ckpt)}); free some "
                "space, move run.runs_dir, or lower run.min_free_disk_gb"
            )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


class Manifest:
    """`manifest.json` of one iteration directory: completed stages with their inputs and config hash."""

    def __init__(self, iter_dir: Path):
        self.path = Path(iter_dir) / "manifest.json"
        self.data: dict[str, Any] = {"stages": {}, "complete": False}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))

    @property
    def complete(self) -> bool:
        return bool(self.data.get("complete"))

    def stage(self, key: str) -> dict[str, Any] | None:
        return self.data["stages"].get(key)

    def is_done(self, key: str, config_hash: str, inputs: list[Path]) -> bool:
        """Done = recorded, same config, same input files, and every output still present."""
        rec = self.stage(key)
        if rec is None:
            return False
        if rec.get("copied_from"):
            return all((self.path.parent / o).is_file() for o in rec["outputs"])
        if rec.get("config_hash") != config_hash:
            return False
        if rec.get("inputs", {}) != {p.name: file_digest(p) for p in inputs if p.is_file()}:
            return False
        return all((self.path.parent / o).is_file() for o in rec["outputs"])

    def record(self, key: str, config_hash: str, inputs: list[Path], outputs: list[Path], **info: Any) -> None:
        self.data["stages"][key] = {
            "config_hash": config_hash,
            "inputs": {p.name: file_digest(p) for p in inputs if p.is_file()},
            "outputs": [p.name for p in outputs],
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **info,
        }
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)
