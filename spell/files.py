"""Small file helpers shared by checkpoints, model preparation and run storage."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fsync_replace(tmp: Path, final: Path) -> None:
    """Make `tmp` durable, then rename it over `final`: readers see the old file or the whole new one."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def atomic_write_text(path: str | Path, text: str) -> None:
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    fsync_replace(tmp, final)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
