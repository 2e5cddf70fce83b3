"""Share of an iteration's wall time spent outside generation and training (orchestration, storage,
Prefect, Ray), measured in one process.

    python bench/overhead.py [--config configs/cpu-smoke.yaml] [--iterations 2]

Generation and training seconds are timed inside the policy actor; everything else is overhead. On
`cpu-smoke` generation is scripted (near zero), so the share there is an upper bound; the target
(< 5%) is for a preset that generates with a real model.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/cpu-smoke.yaml")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    from _common import machine

    from flows.iteration import spell_iteration
    from tasks.actor import HANDLES, call

    runs = tempfile.mkdtemp(prefix="spell-overhead-")
    ov = [f"run.runs_dir={runs}", *args.set]
    spell_iteration(run="bench", config=args.config, overrides=ov, iteration=1)  # Prefect, Ray, actor start-up
    rows = []
    for k in range(2, args.iterations + 2):
        before = {n: call(h, "info")["busy_seconds"] for n, h in HANDLES.items()}
        t = time.perf_counter()
        spell_iteration(run="bench", config=args.config, overrides=ov, iteration=k)
        wall = time.perf_counter() - t
        busy = 0.0
        for n, h in HANDLES.items():
            now = call(h, "info")["busy_seconds"]
            prev = before.get(n, {"generate": 0.0, "train": 0.0})
            busy += (now["generate"] - prev["generate"]) + (now["train"] - prev["train"])
        rows.append((k, wall, busy))
    print(f"machine: {machine()}")
    print(f"config: {args.config} {' '.join(args.set)}")
    for k, wall, busy in rows:
        print(
            f"iteration {k}: wall {wall:.2f}s, generation+training {busy:.2f}s, overhead {100 * (1 - busy / wall):.1f}%"
        )
    wall, busy = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(
        f"overall overhead share: {100 * (1 - busy / wall):.1f}%   (target < 5% on a real-model preset; "
        "iteration 1 is a warm-up and not counted)"
    )


if __name__ == "__main__":
    main()
