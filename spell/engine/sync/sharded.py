"""Trained weights from a sharded learner straight to the rollout copies, with learner rank 0 as the root.

Before, the policy actor took the learner group's `full_state_dict()` through Ray after every step: rank 0
gathered the whole model into host memory and Ray copied it into the object store and out again (28 GiB
of fp32 at 7B, twice). Here the learner's rank 0 and the policy actor form a broadcast group of their own
(`spell.engine.sync.broadcast`: NCCL on GPU, gloo on CPU). Each step every learner rank all-gathers one
parameter at a time (a collective of the learner's own FSDP group; ranks other than 0 drop the result at
once), rank 0 casts it to the wire dtype, packs buckets and broadcasts them, and the policy actor copies
them into its weights in place; its replicas then take its usual push. At no time is there a full copy
of the model on a learner rank or in the object store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from spell.engine.sync.broadcast import (
    DEFAULT_BUCKET_BYTES,
    ReplicaEndpoint,
    SyncGroup,
    SyncStats,
    TensorMeta,
    plan_buckets,
    send_weights,
    sync_tensors,
)


class GatheredTensors(Mapping[str, torch.Tensor]):
    """A sharded model's tensors by name, each all-gathered to its full value when read (a collective:
    every rank must read the same names in the same order). With `dtype` each shard is cast before the
    gather: the wire's bf16 gathers half the bytes of the fp32 masters (issue 27 item 12)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype | None = None):
        self._tensors = dict(model.state_dict(keep_vars=True))  # FSDP2 keeps the plain FQNs: DTensors
        self.dtype = dtype

    def __getitem__(self, name: str) -> torch.Tensor:
        t = self._tensors[name].detach()
        if self.dtype is not None and t.is_floating_point() and t.dtype != self.dtype:
            t = t.to(self.dtype)  # on a DTensor: each rank casts its own shard
        full = getattr(t, "full_tensor", None)  # a DTensor shard; buffers are plain, replicated tensors
        return full() if full is not None else t

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


class LearnerSender:
    """A learner rank's part in the weight-sync group: rank 0 hosts the group and sends, the others only
    take part in the all-gathers."""

    def __init__(self, rank: int):
        self.rank = rank
        self.group: SyncGroup | None = None

    def host(self, ip: str, world: int, backend: str) -> tuple[str, int]:
        assert self.rank == 0, "learner rank 0 is the broadcast's root"
        self.group = SyncGroup.host(ip, world, backend)
        return self.group.address

    def connect(self) -> None:
        if self.group is not None:
            self.group.connect()

    def send(self, model: torch.nn.Module, plan: list[list[TensorMeta]], wire: str) -> dict[str, float]:
        tensors = GatheredTensors(model, getattr(torch, wire))
        if self.rank != 0:
            for name in (m.name for metas in plan for m in metas):
                _ = tensors[name]  # the all-gather (a collective), its result dropped at once
            return {}
        assert self.group is not None, "host() and connect() first"
        return send_weights(self.group, tensors, plan, getattr(torch, wire)).as_metrics()


class LearnerWeightSync:
    """The policy actor's side: a group of two (learner rank 0 the root, itself rank 1), formed once; after
    every step it pulls the trained weights into its full copy, in place.

    The replicas are not members: each shares a learner rank's GPU (rank 0's too), and NCCL refuses two
    ranks of one group on one GPU, so they take the policy actor's push right after (two hops)."""

    def __init__(self, learner_group: Any, model: torch.nn.Module, backend: str,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES):  # fmt: skip
        import ray

        self.group = learner_group
        tensors = sync_tensors(model)
        self.wire = str(next(iter(tensors.values())).dtype).replace("torch.", "")
        self.plan = plan_buckets(tensors, next(iter(tensors.values())).element_size(), bucket_bytes)
        address = learner_group.host_weight_sync(2, backend)
        join = learner_group.connect_weight_sync_async()
        self.endpoint = ReplicaEndpoint(address, 1, 2, backend, self.plan, self.wire)  # blocks until both join
        ray.get(join)

    def pull(self, model: torch.nn.Module) -> SyncStats:
        """The learner's current weights into `model`, in place."""
        import ray

        sends = self.group.send_weights_async(self.plan, self.wire)
        stats = self.endpoint.receive(model)
        root = ray.get(sends)[0]
        stats.seconds = float(root.get("weight_sync_seconds", stats.seconds))  # the sender's clock, as in push
        return stats


__all__ = ["GatheredTensors", "LearnerSender", "LearnerWeightSync"]
