"""The context every stage task runs in: one iteration of one run (or of a replay branch of it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spell.config import SpellConfig, dump_config
from storage.io import read_rows
from storage.layout import RunLayout


@dataclass
class StageContext:
    """One iteration of one run (or of a replay branch of it)."""

    cfg: SpellConfig
    layout: RunLayout
    iteration: int
    branch: str = ""
    initial_checkpoint: str | None = None
    _hash: str = field(default="", repr=False)

    @property
    def iter_dir(self) -> Path:
        return self.layout.iter_dir(self.iteration, self.branch)

    @property
    def config_hash(self) -> str:
        if not self._hash:
            self._hash = hashlib.sha256(dump_config(self.cfg).encode()).hexdigest()[:16]
        return self._hash

    def file(self, kind: str, rnd: int | None = None) -> Path:
        return self.layout.stage_file(self.iteration, kind, rnd, self.branch)

    @property
    def checkpoint_root(self) -> Path:
        return self.iter_dir / "checkpoints" if self.branch else self.layout.checkpoints

    @property
    def actor_name(self) -> str:
        """Unique per run directory (two runs may share a name under different runs dirs) and branch."""
        where = hashlib.sha256(str(self.layout.root).encode()).hexdigest()[:8]
        return f"spell-{self.layout.run}-{where}" + (f"-{self.branch}" if self.branch else "")

    def read(self, kind: str, rnd: int | None = None) -> list[dict[str, Any]]:
        p = self.file(kind, rnd)
        return read_rows(p) if p.is_file() else []
