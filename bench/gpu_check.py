"""The device check (issue 27): what a lent GPU machine (torch + transformers; Ray, vLLM, flash-attn may be
absent) decides for the GPU presets, one table row per finding, each appended to the table as it is made.

    bash bench/gpu_check.sh                               # on the GPU machine: ~5 min, rows in $OUT/gpu_check.md
    python3 bench/gpu_check.py --only calibration --out T.md   # one check (the script runs each this way)
    python3 bench/gpu_check.py --device cpu --small --out T.md # every check at toy shapes on a CPU (a dry run)

Checks, in order of value (`bench/gpu_checks.py`): the environment; the Qwen3-4B LoRA preset's learner at
full shape beside vLLM's sleeping reservation, against `spell plan`; 7B-width memory calibration (2 and 4
layers, real vocabulary) against the plan's per-token and per-logit figures; attention cost at the presets'
head shapes (causal SDPA, SDPA with spell's masks, flex); a learner's allocator cache as another process
sees it, kept and released; host-copy and weight-sync rates; FSDP2 at world size 1 with CPU offload.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine
from gpu_checks import CHECKS


def append(out: Path, rows: list[tuple[str, str]]) -> None:
    """Rows to the table now (a later timeout keeps them)."""
    with open(out, "a", encoding="utf-8") as fh:
        for a, b in rows:
            fh.write(f"| {a} | {b.replace('|', '/')} |\n")
            fh.flush()


def run(name: str, dev: torch.device, small: bool, out: Path) -> bool:
    t = time.perf_counter()
    ok = True
    try:
        rows = CHECKS[name](dev, small)
    except Exception as exc:  # a failing check is a finding; the others still run
        rows, ok = [(name, f"FAILED: {type(exc).__name__}: {str(exc)[:300]}")], False
    append(out, [(a, f"{b} ({time.perf_counter() - t:.0f} s)" if i == len(rows) - 1 else b)
                 for i, (a, b) in enumerate(rows)])  # fmt: skip
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="toy shapes (the CPU dry run of every check)")
    ap.add_argument("--only", choices=sorted(CHECKS), help="run one check (gpu_check.sh runs each alone)")
    ap.add_argument("--header", action="store_true", help="start the table and exit")
    ap.add_argument("--out", default="gpu_check.md")
    args = ap.parse_args()
    out = Path(args.out)
    if args.header or not args.only:
        out.write_text(f"machine: {machine()}\n\n| check | result |\n|---|---|\n")
        if args.header:
            return
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu_check.py: no CUDA device (use --device cpu --small for a dry run)")
    names = [args.only] if args.only else list(CHECKS)
    ok = all([run(n, dev, args.small, out) for n in names])
    print(out.read_text() if not args.only else f"{args.only}: {'ok' if ok else 'FAILED'}", flush=True)
    os._exit(0)  # a process group may still hold threads


if __name__ == "__main__":
    main()
