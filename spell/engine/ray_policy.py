"""The policy as a named Ray actor, so every stage (and every later flow run) talks to one warm model.

    connect("local")                                   # private Ray instance (dev, CI)
    actor = policy_actor("spell-demo", spec, checkpoint_root="runs/demo/checkpoints")
    ray.get(actor.generate.remote(["Hello"], {"n": 2, "max_new_tokens": 16}))

A missing actor is created from the latest complete checkpoint under `checkpoint_root` (or from the
base model when there is none). A GPU is requested only when the cluster has one.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from typing import Any

from spell.engine.checkpoint import latest_checkpoint
from spell.engine.policy import Policy, PolicySpec

NAMESPACE = "spell"


def connect(address: str = "local", num_cpus: int | None = None, object_store_memory: int | None = None) -> None:
    """Join the configured cluster (`auto`, `host:port`, `ray://...`) or start a private local instance.

    A local instance on a CPU machine gets a small object store (300 MB: tests, demo); with a GPU, Ray's
    default, since a sharded learner hands the full weights to the rollout engine through it."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address in ("", "local"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local instance on loopback
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # private, loopback-only instance
        ray.init(
            address="local",
            namespace=NAMESPACE,
            num_cpus=num_cpus or max(os.cpu_count() or 1, 2),
            include_dashboard=False,
            object_store_memory=object_store_memory or _default_object_store(),
            _temp_dir=os.environ.get("SPELL_RAY_TMP") or tempfile.mkdtemp(prefix="spell-ray-"),
            log_to_driver=False,
        )
    else:
        ray.init(address=address, namespace=NAMESPACE)


def _default_object_store() -> int | None:
    import torch

    return None if torch.cuda.is_available() else 300_000_000


def policy_actor(
    name: str,
    spec: PolicySpec,
    checkpoint_root: str | None = None,
    detached: bool = False,
    num_cpus: float = 1.0,
    initial_checkpoint: str | None = None,
    start_timeout: float = 600.0,
) -> Any:
    """The named policy actor: reused when alive, else created from the latest checkpoint under
    `checkpoint_root`, else from `initial_checkpoint`, else from the base model."""
    import ray

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        pass
    from spell.engine.learner_group import check_layout, rollout_gpus

    ckpt = latest_checkpoint(checkpoint_root) if checkpoint_root else None
    ckpt = ckpt or initial_checkpoint
    cluster = ray.cluster_resources()
    # a clear error before anything starts when the cluster cannot host rollout engine + learner ranks
    check_layout(
        spec.backend,
        spec.tensor_parallel,
        spec.learner_ranks,
        spec.gpus_per_rank,
        spec.cpus_per_rank,
        cluster,
        spec.rollout_replicas,
    )
    spec = replace(spec, group_name=f"{name}-learner")
    actor_cls = ray.remote(Policy)
    options: dict[str, Any] = dict(
        name=name,
        namespace=NAMESPACE,
        get_if_exists=True,
        num_cpus=num_cpus,
        num_gpus=rollout_gpus(spec.backend, spec.tensor_parallel, float(cluster.get("GPU", 0.0))),
        max_concurrency=1,
    )
    if detached:
        options["lifetime"] = "detached"
    handle = actor_cls.options(**options).remote(spec.to_dict(), str(ckpt) if ckpt else None)
    try:
        ray.get(handle.info.remote(), timeout=start_timeout)  # surface construction errors here
    except ray.exceptions.GetTimeoutError:
        ray.kill(handle)
        raise RuntimeError(
            f"the policy actor {name!r} did not start within {start_timeout:.0f}s; it asks for {num_cpus} CPU and "
            f"{options['num_gpus']} GPU, and the cluster has {ray.available_resources()} free"
        ) from None
    return handle


def kill_policy_actor(name: str) -> bool:
    import ray

    try:
        ray.kill(ray.get_actor(name, namespace=NAMESPACE))
        return True
    except ValueError:
        return False
