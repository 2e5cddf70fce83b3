"""Helpers for tests that run `spell` in a subprocess with its own private Ray instance."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def short_tmp() -> Path:
    """A Ray temp dir: its unix socket paths must stay under 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="spr-", dir="/tmp"))


def run_spell(args: list[str], log: Path, ray_tmp: Path, env: Mapping[str, str] | None = None) -> int:
    """`python -m spell.cli <args>` with output to `log` (a file, not a pipe: orphaned children cannot hold
    it open); the private Ray instance it started is stopped afterwards, even after a SIGKILL."""
    env = {**(os.environ if env is None else env), "SPELL_RAY_TMP": str(ray_tmp), "PYTHONUNBUFFERED": "1"}
    try:
        with open(log, "w") as fh:
            cmd = [sys.executable, "-m", "spell.cli", *args]
            return subprocess.run(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=600).returncode
    finally:
        subprocess.run(["pkill", "-9", "-f", str(ray_tmp)], check=False)
