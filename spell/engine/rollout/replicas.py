"""Rollout replicas: `engine.rollout_replicas - 1` generation-only copies of the policy as Ray actors.

The policy actor splits each rollout across itself and its replicas, and after every GRPO step pushes
the new weights to them over a broadcast group of their own (`spell.engine.sync.broadcast`: gloo on CPU,
NCCL on GPU), never through the Ray object store; with a sharded learner its rank 0 is the group's root
instead (`spell.engine.sync.sharded`). A vLLM replica is a `VLLMReplica` (no weights of its own), a
transformers one a generation-only `Policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import torch

from spell.engine.placement import actor_env, with_env
from spell.engine.rollout.interface import Prompt, SamplingParams
from spell.engine.spec import PolicySpec
from spell.engine.sync.broadcast import (
    DEFAULT_BUCKET_BYTES,
    SyncGroup,
    SyncStats,
    TensorMeta,
    local_backend,
    plan_buckets,
    send_weights,
    sync_tensors,
)

SEED_STRIDE = 7919  # share k samples with seed + 7919 * k, so replicas never repeat each other


class RolloutReplicas:
    """The replica actors of one policy actor, and the weight-sync group that reaches them."""

    def __init__(self, actors: list[Any], bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        self.actors = actors
        self.bucket_bytes = bucket_bytes
        self._group: SyncGroup | None = None
        self._plan: list[list[TensorMeta]] = []
        self._wire: torch.dtype = torch.float32

    @classmethod
    def start(cls, policy_cls: type, spec: PolicySpec, learner_group: Any, colocated: bool,
              checkpoint: str | None) -> RolloutReplicas | None:  # fmt: skip
        """The actors, inside the learner's placement group (on rank i's GPU when there is one)."""
        if spec.rollout_replicas <= 1 or spec.replica:
            return None
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        replica_spec = replace(
            spec,
            replica=True,
            learner_ranks=1,
            rollout_replicas=1,
            gpu_memory_utilization=spec.replica_gpu_memory_utilization,
        )
        if spec.backend == "vllm":  # no weights of its own: vLLM's workers receive every push themselves
            from spell.engine.rollout.vllm_replica import VLLMReplica

            policy_cls = VLLMReplica
        remote = ray.remote(policy_cls)
        actors = []
        for i in range(spec.rollout_replicas - 1):
            opts: dict[str, Any] = {"num_cpus": 0, "num_gpus": 0}
            if learner_group is not None:
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    learner_group.pg, placement_group_bundle_index=i
                )
                opts["num_gpus"] = 0.5 if colocated else 0
            elif torch.cuda.is_available():
                opts["num_gpus"] = spec.tensor_parallel if spec.backend == "vllm" else 1
            opts = with_env(opts, actor_env(spec.mask_gpus, spec.nccl_nvls))
            seed = None if spec.engine_seed is None else spec.engine_seed + SEED_STRIDE * (i + 1)
            actors.append(remote.options(**opts).remote(replace(replica_spec, engine_seed=seed).to_dict(), checkpoint))
        ray.get([a.info.remote() for a in actors])  # surface construction errors here
        return cls(actors)

    def __len__(self) -> int:
        return len(self.actors)

    def call_all(self, method: str, *args: Any) -> list[Any]:
        import ray

        return ray.get([getattr(a, method).remote(*args) for a in self.actors])

    def ranks(self, first: int) -> tuple[list[int], int]:
        """Each replica's first rank in a broadcast group whose members before them are ranks 0..first-1,
        and the group's size (a vLLM replica under tensor parallelism is one member per worker)."""
        sizes = self.call_all("sync_ranks")
        starts = [first + sum(sizes[:i]) for i in range(len(sizes))]
        return starts, first + sum(sizes)

    def rollout(
        self,
        local: Callable[..., list[dict[str, Any]]],
        prompts: list[Prompt],
        params: dict[str, Any] | SamplingParams,
        max_prompt_tokens: int | None,
        prefills: list[str] | None,
        role: str | None,
    ) -> list[dict[str, Any]]:
        """Contiguous shares of the prompts to the replicas and to `local` (the policy actor's own engine),
        concurrently; results in prompt order with global prompt indices."""
        import ray

        d = asdict(params) if isinstance(params, SamplingParams) else dict(params)
        parts = min(len(self.actors) + 1, len(prompts))
        bounds = [len(prompts) * k // parts for k in range(parts + 1)]

        def share(k: int) -> tuple[list[Prompt], dict[str, Any], list[str] | None]:
            lo, hi = bounds[k], bounds[k + 1]
            seed = None if d.get("seed") is None else int(d["seed"]) + SEED_STRIDE * k
            return prompts[lo:hi], {**d, "seed": seed}, prefills[lo:hi] if prefills else None

        futures = []
        for k in range(1, parts):
            ps, pp, pf = share(k)
            futures.append(self.actors[k - 1].rollout.remote(ps, pp, max_prompt_tokens, pf, role))
        ps, pp, pf = share(0)
        out = local(ps, pp, max_prompt_tokens, pf, role)
        for k, rows in enumerate(ray.get(futures), start=1):
            for row in rows:
                for c in row["completions"]:
                    c["prompt_index"] += bounds[k]
            out += rows
        return out

    def push(self, model: torch.nn.Module) -> SyncStats:
        """Broadcast the model's weights to every replica (the group is formed on the first push)."""
        import ray

        tensors = sync_tensors(model)
        if self._group is None:
            backend = local_backend()
            dtypes = set(self.call_all("weight_dtype"))
            if len(dtypes) != 1:
                raise RuntimeError(f"rollout replicas disagree on their weight dtype: {sorted(dtypes)}")
            wire = dtypes.pop()
            self._wire = getattr(torch, wire)
            size = torch.empty((), dtype=self._wire).element_size()
            self._plan = plan_buckets(tensors, size, self.bucket_bytes)
            ranks, world = self.ranks(first=1)
            group = SyncGroup.host(ray.util.get_node_ip_address(), world, backend)
            joins = [
                a.join_weight_sync.remote(group.address, rank, world, backend, self._plan, wire)
                for rank, a in zip(ranks, self.actors, strict=True)
            ]
            group.connect()
            ray.get(joins)
            self._group = group
        receives = [a.receive_weights.remote() for a in self.actors]
        group = self._group
        try:
            stats = send_weights(group, tensors, self._plan, self._wire)
            ray.get(receives, timeout=group.timeout.total_seconds())  # a receiver that died does not hang us
        except BaseException:
            group.abort()
            self._group = None  # the next push forms a new group
            raise
        return stats


__all__ = ["SEED_STRIDE", "RolloutReplicas"]
