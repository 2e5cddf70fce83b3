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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """A Prefect server on 127.0.0.1 in its own session, with `home` as PREFECT_HOME: (process, API URL, the
    environment that talks to it). Its log is `home/server.log`."""
    import time
    import urllib.request

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": url}
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url, env
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"Prefect server did not start; see {home / 'server.log'}")


def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in session `sid` (a process started with
    start_new_session=True leads a session of its own pid; its children, Ray's among them, stay in it)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            out.append((int(entry.name), cmd))
    return out
