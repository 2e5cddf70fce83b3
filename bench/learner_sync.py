"""The sharded learner's weights to the policy actor's rollout copy: learner rank 0 as the broadcast's root
(spell.engine.sync.sharded, gloo here: the CPU twin of NCCL) against the path it replaced, the full state
dict gathered on rank 0 and handed through Ray, both measured in this run on 2 gloo learner ranks.

    python bench/learner_sync.py            # the default preset's model (SmolLM2-135M)
    python bench/learner_sync.py --toy

Per step: seconds until the copy holds the trained weights, and the full host copies each path makes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from _common import bench_model, machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="a random small model instead of the default preset's")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import time

    import ray
    from transformers import AutoModelForCausalLM

    from spell.engine.learner.core import LearnerSettings
    from spell.engine.learner.fsdp import ShardingSettings
    from spell.engine.learner.group import LearnerGroup
    from spell.engine.sync.broadcast import sync_tensors
    from spell.engine.sync.sharded import LearnerWeightSync

    path = bench_model(args.toy)
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    group = LearnerGroup(path, LearnerSettings(), ShardingSettings(world_size=2, mixed_precision="fp32"), 0)
    copy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    nbytes = sum(t.numel() * t.element_size() for t in sync_tensors(copy).values())
    sync = LearnerWeightSync(group, copy, "gloo")

    def through_ray() -> float:
        t = time.perf_counter()
        copy.load_state_dict(group.full_state_dict())
        return time.perf_counter() - t

    def rank0_broadcast() -> float:
        t = time.perf_counter()
        sync.pull(copy)
        return time.perf_counter() - t

    results = {}
    for name, fn in (("full state dict via Ray", through_ray), ("rank-0 broadcast", rank0_broadcast)):
        fn()  # warm-up
        results[name] = statistics.median(fn() for _ in range(args.repeats))
    want = group.full_state_dict()
    assert all(torch.equal(copy.state_dict()[k], v) for k, v in want.items()), "the copy differs"
    group.shutdown()
    print(f"machine: {machine()}")
    print(f"model: {path} ({nbytes / 2**20:.1f} MiB fp32), 2 gloo learner ranks, median of {args.repeats}")
    copies = {"full state dict via Ray": "2 full (rank 0, the object store)", "rank-0 broadcast": "0 full"}
    print(f"{'path':<24} {'s/step':>8}  host copies besides the rollout copy")
    for name, sec in results.items():
        print(f"{name:<24} {sec:>8.3f}  {copies[name]}")
    ratio = results["full state dict via Ray"] / results["rank-0 broadcast"]
    print(f"rank-0 broadcast vs full state dict via Ray: {ratio:.2f}x faster, in this run")
    ray.shutdown()


if __name__ == "__main__":
    main()
