"""Stops a private Ray instance when the process that started it dies without stopping it (SIGKILL, a crash
past every handler): a tiny watcher process, started beside it, that outlives it.

    python -m spell.engine.ray_reaper <owner pid> <pid>:<start time> ...     # started by start_reaper()

It polls the owner every half second, keeping track of the recorded Ray head processes (GCS, raylet,
monitor, dashboard, log monitor) and their descendants (workers, actors, agents); once the owner is gone it
sends them SIGTERM, then SIGKILL to those still there after 3 s. A process is recorded with its start time,
so a reused PID is never touched. Linux only (it reads /proc); elsewhere no reaper starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc/<pid>/stat; None for a process
    that is gone or a zombie (dead, not yet waited for)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return None if fields[0] in ("Z", "X") else (int(fields[1]), int(fields[19]))


def _children_by_parent() -> dict[int, list[tuple[int, int]]]:
    """parent pid -> (pid, start time) of its live children, from one pass over /proc."""
    out: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))):
            out.setdefault(st[0], []).append((int(entry.name), st[1]))
    return out


def children(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of the live direct children of `pid`."""
    return _children_by_parent().get(pid, [])


def start_reaper(owner: int | None = None) -> subprocess.Popen | None:
    """Watch `owner` (this process) and stop its current child processes (the Ray head it just started) when
    it dies. Call right after the private instance started; None where /proc is missing."""
    if not Path("/proc/self/stat").is_file():
        return None
    owner = owner or os.getpid()
    procs = [f"{pid}:{start}" for pid, start in children(owner)]
    return subprocess.Popen(
        [sys.executable, "-m", "spell.engine.ray_reaper", str(owner), *procs],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the owner's process group does not reach the watcher
    )


def _same(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start


def _tree(procs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The recorded processes still alive and all their descendants (the raylet's workers and agents)."""
    by_parent = _children_by_parent()  # one scan, walked for every level
    out = [(p, s) for p, s in procs if _same(p, s)]
    frontier = list(out)
    while frontier:
        frontier = [c for p, _ in frontier for c in by_parent.get(p, [])]
        out += frontier
    return out


def reap(owner: int, procs: list[tuple[int, int]], poll: float = 0.5, grace: float = 3.0) -> None:
    known = set(procs)
    while _stat(owner) is not None:
        # the tree is kept current while the owner lives: the raylet dies with its owner at once, and its
        # orphans are reparented, no longer found under it
        known = {x for x in known if _same(*x)} | set(_tree(procs))
        time.sleep(poll)
    procs = sorted(known)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        alive = [(p, s) for p, s in procs if _same(p, s)]
        for p, _ in alive:
            with contextlib.suppress(OSError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [(p, s) for p, s in alive if _same(p, s)]


if __name__ == "__main__":
    owner_pid = int(sys.argv[1])
    reap(owner_pid, [(int(p), int(s)) for p, s in (a.split(":") for a in sys.argv[2:])])
