"""Trained weights to the rollout replicas without the Ray object store.

The object store path put a full host copy of the weights per replica per step (at 7B with 7 replicas
about 200 GiB of host copies, and 310 GiB of host RAM at start-up). Here the policy actor (rank 0) and
its replicas form a stateless process group of their own (a TCPStore and a gloo or NCCL group built
directly, outside torch.distributed's default group, which a sharded learner owns) and the weights are
broadcast from rank 0 in buckets of the rollout dtype; each replica copies every bucket into its
weights in place, so at no time is there a second full copy on either side. On CPU the group is gloo
(the CPU twin of the NCCL path, tested and timed here); on GPU it is NCCL (OpenRLHF, SkyRL and vLLM's
weight-transfer API do the same). The tensor list is agreed once at set-up, not sent every step.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEFAULT_BUCKET_BYTES = 64 << 20  # 64 MiB: one bucket per ~32M bf16 elements, well inside any GPU's headroom


@dataclass(frozen=True)
class TensorMeta:
    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class SyncStats:
    """What one push moved: bytes on the wire per receiver, buckets, seconds (sender side)."""

    bytes: int = 0
    buckets: int = 0
    seconds: float = 0.0

    @staticmethod
    def total(hops: list[SyncStats]) -> SyncStats:
        """One step's syncs summed (learner -> policy actor -> replicas)."""
        return SyncStats(sum(h.bytes for h in hops), sum(h.buckets for h in hops), sum(h.seconds for h in hops))

    def as_metrics(self) -> dict[str, float]:
        return {"weight_sync_bytes": float(self.bytes), "weight_sync_seconds": self.seconds}


def sync_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a replica needs, by name: parameters and persistent buffers, a tied weight once (the
    receiver's tied twin shares its storage, so it follows)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        key = (t.data_ptr(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out[name] = t
    return out


def plan_buckets(tensors: dict[str, torch.Tensor], element_bytes: int, bucket_bytes: int) -> list[list[TensorMeta]]:
    """Consecutive tensors grouped into buckets of at most `bucket_bytes` (a larger tensor goes alone)."""
    buckets: list[list[TensorMeta]] = [[]]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * element_bytes
        if buckets[-1] and size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(TensorMeta(name, tuple(t.shape)))
        size += nbytes
    return [b for b in buckets if b]


def _unpack(flat: torch.Tensor, metas: list[TensorMeta]) -> Iterator[tuple[str, torch.Tensor]]:
    offset = 0
    for m in metas:
        yield m.name, flat[offset : offset + m.numel].view(m.shape)
        offset += m.numel


class SyncGroup:
    """A broadcast group of `world` processes; rank 0 (the policy actor) is the sender and the store's host.

    Build rank 0 first (`SyncGroup.host(...)`), hand its `address` to the others, then every rank calls
    `connect()` concurrently (it blocks until all have joined)."""

    def __init__(self, address: tuple[str, int], rank: int, world: int, backend: str, timeout_s: float = 600.0):
        self.address, self.rank, self.world, self.backend = address, rank, world, backend
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self._store: dist.TCPStore | None = None
        self.pg: dist.ProcessGroup | None = None

    @classmethod
    def host(cls, ip: str, world: int, backend: str, timeout_s: float = 600.0) -> SyncGroup:
        group = cls((ip, 0), 0, world, backend, timeout_s)
        group._store = dist.TCPStore(ip, 0, world, is_master=True, wait_for_workers=False, timeout=group.timeout)
        group.address = (ip, group._store.port)
        return group

    def connect(self) -> SyncGroup:
        if self._store is None:
            self._store = dist.TCPStore(*self.address, self.world, is_master=False, timeout=self.timeout)
        store = dist.PrefixStore("spell-weight-sync", self._store)
        if self.backend == "nccl":  # pragma: no cover - needs CUDA
            opts = dist.ProcessGroupNCCL.Options()
            opts._timeout = self.timeout  # else NCCL's own 10-minute default: a dead receiver blocks the rest
            self.pg = dist.ProcessGroupNCCL(store, self.rank, self.world, opts)
        else:
            self.pg = dist.ProcessGroupGloo(store, self.rank, self.world, self.timeout)
        return self

    @property
    def device(self) -> torch.device:
        """Where this rank's bucket buffers live: its GPU under NCCL, the CPU under gloo."""
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def broadcast(self, t: torch.Tensor) -> None:
        assert self.pg is not None, "connect() first (or the group was aborted)"
        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        if not self.pg.broadcast([t], opts).wait(self.timeout):
            raise TimeoutError(f"weight-sync broadcast not done after {self.timeout.total_seconds():.0f} s")

    def abort(self) -> None:
        """Tear the group down after an error, so that the other members' pending collectives fail now
        instead of waiting out the timeout; a later sync forms a new group."""
        pg, self.pg = self.pg, None
        if pg is not None:
            for name in ("abort", "shutdown"):
                with contextlib.suppress(Exception):
                    getattr(pg, name)()
                    break


def send_weights(
    group: SyncGroup, tensors: Mapping[str, torch.Tensor], plan: list[list[TensorMeta]], dtype: torch.dtype,
) -> SyncStats:  # fmt: skip
    """Rank 0: each bucket packed in the wire dtype (one bucket-sized buffer at a time) and broadcast."""
    stats = SyncStats()
    start = time.perf_counter()
    try:
        with torch.no_grad():
            for metas in plan:
                parts = [tensors[m.name].detach().reshape(-1).to(device=group.device, dtype=dtype) for m in metas]
                flat = torch.cat(parts)
                group.broadcast(flat)
                stats.bytes += flat.numel() * flat.element_size()
                stats.buckets += 1
    except BaseException:
        group.abort()
        raise
    stats.seconds = time.perf_counter() - start
    return stats


def iter_received(
    group: SyncGroup, plan: list[list[TensorMeta]], dtype: torch.dtype, stats: SyncStats,
) -> Iterator[tuple[str, torch.Tensor]]:  # fmt: skip
    """A receiver: (name, view) pairs, each bucket received into one buffer when the previous one is used
    up, so a consumer that loads as it reads (vLLM's in-place reload) never holds more than a bucket."""
    start = time.perf_counter()
    try:
        for metas in plan:
            flat = torch.empty(sum(m.numel for m in metas), dtype=dtype, device=group.device)
            group.broadcast(flat)
            stats.bytes += flat.numel() * flat.element_size()
            stats.buckets += 1
            yield from _unpack(flat, metas)
    except BaseException:  # a broadcast that failed, or a consumer that stopped reading (GeneratorExit)
        group.abort()  # the sender and the other receivers fail now rather than after the timeout
        raise
    stats.seconds = time.perf_counter() - start


def receive_weights(
    group: SyncGroup, plan: list[list[TensorMeta]], dtype: torch.dtype,
    apply: Callable[[Iterator[tuple[str, torch.Tensor]]], None],
) -> SyncStats:  # fmt: skip
    """A replica: each bucket received into one buffer and handed to `apply` as (name, view) pairs."""
    stats = SyncStats()
    apply(iter_received(group, plan, dtype, stats))
    return stats


def copy_into(tensors: dict[str, torch.Tensor]) -> Callable[[Iterator[tuple[str, torch.Tensor]]], None]:
    """The in-place `apply` for a transformers replica: each received view copied into its weight."""

    def apply(pairs: Iterator[tuple[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for name, value in pairs:
                tensors[name].copy_(value)

    return apply


def local_backend() -> str:
    """NCCL where this process has a GPU (weights in host memory are sent from a GPU bucket all the same),
    else gloo."""
    return "nccl" if torch.cuda.is_available() else "gloo"


__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "SyncGroup",
    "SyncStats",
    "TensorMeta",
    "copy_into",
    "iter_received",
    "local_backend",
    "plan_buckets",
    "receive_weights",
    "send_weights",
    "sync_tensors",
]


class ReplicaEndpoint:
    """A receiver's end of a weight-sync group: each broadcast goes straight into its model's weights (cast
    there when the wire dtype differs from the weights')."""

    def __init__(self, address: tuple[str, int], rank: int, world: int, backend: str, plan: list[list[TensorMeta]],
                 wire: str):  # fmt: skip
        self.group = SyncGroup(tuple(address), rank, world, backend).connect()  # type: ignore[arg-type]
        self.plan, self.wire = plan, getattr(torch, wire)

    def receive(self, model: torch.nn.Module) -> SyncStats:
        tensors = sync_tensors(model)
        return receive_weights(self.group, self.plan, self.wire, copy_into(tensors))
