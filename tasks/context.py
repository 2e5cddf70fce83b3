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

    def prior_round_files(self, kinds: tuple[str, ...], rnd: int) -> dict[str, list[Path]]:
        """Round files of each kind before round `rnd`: the main line's earlier iterations, then this
        iteration's (or branch's) earlier rounds, in order (what the history memory and the collapse window
        are rebuilt from)."""
        files: dict[str, list[Path]] = {kind: [] for kind in kinds}
        for k in self.layout.iterations():
            if k >= self.iteration:
                break
            d = self.layout.iter_dir(k)
            for kind in kinds:
                files[kind] += sorted(d.glob(f"{kind}_r*.parquet"))
        for r in range(1, rnd):
            for kind in kinds:
                files[kind].append(self.file(kind, r))
        return files

    def read(self, kind: str, rnd: int | None = None) -> list[dict[str, Any]]:
        p = self.file(kind, rnd)
        return read_rows(p) if p.is_file() else []
