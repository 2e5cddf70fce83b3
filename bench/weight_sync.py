"""Weight sync to rollout replicas: the broadcast group (spell.engine.sync.broadcast, gloo here: the CPU twin
of the NCCL path) against the Ray object store path it replaced, both measured in this run.

    python bench/weight_sync.py                  # the default preset's model (SmolLM2-135M), 2 replicas
    python bench/weight_sync.py --toy --replicas 3

Per push: bytes each replica receives, seconds until every replica holds the new weights, and the host
copies the path makes (object store: one in the store plus one per replica deserialised; broadcast: one
bucket buffer per process). Then the same figures estimated for 7B, 7 replicas from the measured rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from _common import bench_model, machine


class Replica:
    """A stand-in rollout replica: the model's architecture, random weights, both receive paths."""

    def __init__(self, path: str, dtype: str):
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.set_num_threads(1)
        cfg = AutoConfig.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype))
        self.endpoint = None

    def load_state(self, state) -> bool:  # the old path: a full dict from the object store
        self.model.load_state_dict(state, strict=False)
        return True

    def join(self, address, rank, world, plan, wire) -> bool:
        from spell.engine.sync.broadcast import ReplicaEndpoint

        self.endpoint = ReplicaEndpoint(address, rank, world, "gloo", plan, wire)
        return True

    def receive(self) -> float:
        return self.endpoint.receive(self.model).seconds

    def checksum(self) -> float:
        return float(sum(p.double().sum() for p in self.model.parameters()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy", action="store_true", help="a random small model instead of the default preset's")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", help="the replicas' (and the wire's) dtype")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from transformers import AutoModelForCausalLM

    from spell.engine.sync.broadcast import SyncGroup, plan_buckets, send_weights, sync_tensors

    path = bench_model(args.toy)
    wire = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tensors = sync_tensors(model)
    nbytes = sum(t.numel() for t in tensors.values()) * torch.empty((), dtype=wire).element_size()
    ray.init(num_cpus=args.replicas + 1, include_dashboard=False, log_to_driver=False)
    actors = [ray.remote(Replica).options(num_cpus=1).remote(path, args.dtype) for _ in range(args.replicas)]
    ray.get([a.checksum.remote() for a in actors])

    def object_store() -> float:
        t = time.perf_counter()
        ref = ray.put({k: v.detach().to(wire) for k, v in model.state_dict().items()})
        ray.get([a.load_state.remote(ref) for a in actors])
        del ref
        return time.perf_counter() - t

    plan = plan_buckets(tensors, torch.empty((), dtype=wire).element_size(), 64 << 20)
    host = SyncGroup.host(ray.util.get_node_ip_address(), args.replicas + 1, "gloo")
    joins = [a.join.remote(host.address, k + 1, args.replicas + 1, plan, args.dtype) for k, a in enumerate(actors)]
    host.connect()
    ray.get(joins)

    def broadcast() -> float:
        t = time.perf_counter()
        futures = [a.receive.remote() for a in actors]
        send_weights(host, tensors, plan, wire)
        ray.get(futures)
        return time.perf_counter() - t

    want = float(sum(t.detach().to(wire).double().sum() for t in tensors.values()))
    results = {}
    for name, fn in (("object store", object_store), ("broadcast (gloo)", broadcast)):
        fn()  # warm-up
        results[name] = statistics.median(fn() for _ in range(args.repeats))
        sums = ray.get([a.checksum.remote() for a in actors])
        assert all(abs(s - want) <= 1e-6 * max(1.0, abs(want)) for s in sums), f"{name}: replicas differ"
    print(f"machine: {machine()}")
    print(f"model: {path} ({nbytes / 2**20:.1f} MiB per replica in {args.dtype}), {args.replicas} replicas, "
          f"{len(plan)} buckets, median of {args.repeats}")  # fmt: skip
    copies = {"object store": f"{args.replicas + 1} full", "broadcast (gloo)": "0 full (one 64 MiB bucket each)"}
    print(f"{'path':<18} {'s/push':>8} {'GiB/s per replica':>18}  host copies")
    for name, sec in results.items():
        print(f"{name:<18} {sec:>8.3f} {nbytes / sec / 2**30:>18.2f}  {copies[name]}")
    ratio = results["object store"] / results["broadcast (gloo)"]
    print(f"broadcast vs object store: {ratio:.2f}x faster per push, in this run")
    est, scale = 7.6e9 * 2, 7 / args.replicas  # 7B bf16 bytes per replica; 7 replicas
    store_s = est / nbytes * scale * results["object store"]
    gloo_s = est / nbytes * scale * results["broadcast (gloo)"]
    print(f"estimate, 7B bf16 to 7 replicas at this run's rates: object store {store_s:.0f} s and "
          f"{8 * est / 2**30:.0f} GiB of host copies; gloo {gloo_s:.0f} s; NCCL at ~150 GB/s ~0.1 s")  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main()
