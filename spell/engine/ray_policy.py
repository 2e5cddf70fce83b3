"""The policy as a named Ray actor, so every stage (and every later flow run) talks to one warm model.

    connect("local")                                   # private Ray instance (dev, CI)
    actor = policy_actor("spell-demo", spec, checkpoint_root="runs/demo/checkpoints")
    ray.get(actor.generate.remote(["Hello"], {"n": 2, "max_new_tokens": 16}))

A missing actor is created from the latest complete checkpoint under `checkpoint_root` (or from the
base model when there is none). A GPU is requested only when the cluster has one. Under `spell deploy`
the flow runs join the deploy process's Ray instance (`SPELL_RAY_ADDRESS`) and the policy is a
detached actor that outlives each flow run, ending itself after `engine.warm_policy_seconds` idle; an
actor whose spec or weights no longer match the run (another config, a rolled-back run) is replaced.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

from spell.engine.models.checkpoint import latest_checkpoint, read_state
from spell.engine.policy import Policy, PolicySpec

NAMESPACE = "spell"
SHARED_RAY = "SPELL_RAY_ADDRESS"  # set by `spell deploy`: the Ray instance its flow runs join


def warm() -> bool:
    """Whether this process's flow runs share a Ray instance that outlives them (spell deploy)."""
    return bool(os.environ.get(SHARED_RAY))


def connect(address: str = "local", num_cpus: int | None = None, object_store_memory: int | None = None) -> None:
    """Join the configured cluster (`auto`, `host:port`, `ray://...`), the Ray instance of `spell deploy`, or
    start a private local instance (removed with its temp folder when the process exits).

    A local instance on a CPU machine gets a small object store (300 MB: tests, demo); with a GPU, Ray's
    default, since a sharded learner hands the full weights to the rollout engine through it."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address in ("", "local") and warm():
        ray.init(address=os.environ[SHARED_RAY], namespace=NAMESPACE, log_to_driver=False)
    elif address in ("", "local"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local instance on loopback
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # private, loopback-only instance
        given = os.environ.get("SPELL_RAY_TMP")
        tmp = given or tempfile.mkdtemp(prefix="spell-ray-")
        ray.init(
            address="local",
            namespace=NAMESPACE,
            num_cpus=num_cpus or max(os.cpu_count() or 1, 2),
            include_dashboard=False,
            object_store_memory=object_store_memory or _default_object_store(),
            _temp_dir=tmp,
            log_to_driver=False,
        )
        if not given:
            atexit.register(_remove_private, tmp)
    else:
        ray.init(address=address, namespace=NAMESPACE)


def _remove_private(tmp: str) -> None:
    import ray

    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def shared_address() -> str:
    """The address other processes join (spell deploy exports it as SPELL_RAY_ADDRESS)."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


def _default_object_store() -> int | None:
    import torch

    return None if torch.cuda.is_available() else 300_000_000


class WarmPolicy(Policy):
    """A detached policy actor that ends itself after `idle_timeout` seconds without a call."""

    def __init__(self, spec: PolicySpec | dict[str, Any], checkpoint: str | None = None, idle_timeout: float = 0.0):
        super().__init__(spec, checkpoint)
        self.last_call = time.monotonic()
        if idle_timeout > 0:
            threading.Thread(target=self._watch, args=(idle_timeout,), daemon=True).start()

    def __getattribute__(self, name: str) -> Any:
        if name[0] != "_" and name != "last_call":  # a method Ray calls (or its caller's attribute): not idle
            object.__setattr__(self, "last_call", time.monotonic())
        return super().__getattribute__(name)

    def _watch(self, idle_timeout: float) -> None:
        import ray

        while time.monotonic() - object.__getattribute__(self, "last_call") < idle_timeout:
            time.sleep(min(10.0, idle_timeout / 4))
        try:
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
        finally:
            os._exit(0)


def _expected_iteration(ckpt: Any) -> int:
    if not ckpt:
        return 0
    st = read_state(ckpt)
    return int(st.get("trained_iteration", st.get("iteration", 0)))


def _fits(handle: Any, spec: PolicySpec, iteration: int) -> bool:
    """A running actor may serve this run if it was built from the same spec and holds the weights of the
    checkpoint the run would start from (else, e.g. after a crash between step and checkpoint, it is rebuilt
    and the stored step re-applied)."""
    import ray

    try:
        info = ray.get(handle.info.remote(), timeout=60)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False
    return info.get("spec") == spec.to_dict() and int(info.get("trained_iteration", -1)) == iteration


def policy_actor(
    name: str,
    spec: PolicySpec,
    checkpoint_root: str | None = None,
    detached: bool = False,
    num_cpus: float = 1.0,
    initial_checkpoint: str | None = None,
    start_timeout: float = 600.0,
    idle_timeout: float = 0.0,
) -> Any:
    """The named policy actor: reused when alive and current, else created from the latest checkpoint under
    `checkpoint_root`, else from `initial_checkpoint`, else from the base model."""
    import ray

    from spell.engine.placement import actor_env, check_layout, rollout_gpus, with_env

    ckpt = latest_checkpoint(checkpoint_root) if checkpoint_root else None
    ckpt = ckpt or initial_checkpoint
    spec = replace(spec, group_name=f"{name}-learner")
    try:
        existing = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        existing = None
    if existing is not None:
        if _fits(existing, spec, _expected_iteration(ckpt)):
            return existing
        kill_policy_actor(name)
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
    options: dict[str, Any] = dict(
        name=name,
        namespace=NAMESPACE,
        num_cpus=num_cpus,
        num_gpus=rollout_gpus(spec.backend, spec.tensor_parallel, float(cluster.get("GPU", 0.0))),
        max_concurrency=1,
    )
    if detached:
        options["lifetime"] = "detached"
    faults = {k: os.environ[k] for k in ("SPELL_FAULT_GARBAGE", "SPELL_FAULT_HACK") if os.environ.get(k)}
    if faults:  # test-only fault injection reaches the actor whichever process started Ray
        options["runtime_env"] = {"env_vars": faults}
    options = with_env(options, actor_env(spec.mask_gpus, spec.nccl_nvls))
    handle = _create(ray.remote(WarmPolicy), options, (spec.to_dict(), str(ckpt) if ckpt else None, idle_timeout))
    try:
        ray.get(handle.info.remote(), timeout=start_timeout)  # surface construction errors here
    except ray.exceptions.GetTimeoutError:
        ray.kill(handle)
        raise RuntimeError(
            f"the policy actor {name!r} did not start within {start_timeout:.0f}s; it asks for {num_cpus} CPU and "
            f"{options['num_gpus']} GPU, and the cluster has {ray.available_resources()} free"
        ) from None
    return handle


def _create(cls: Any, options: dict[str, Any], args: tuple[Any, ...], tries: int = 50) -> Any:
    """Create a named actor; a name still held by an actor that is being killed frees within seconds."""
    for _ in range(tries - 1):
        try:
            return cls.options(**options).remote(*args)
        except ValueError:  # "actor name is already taken"
            time.sleep(0.2)
    return cls.options(**options).remote(*args)


def kill_policy_actor(name: str) -> bool:
    """Kill the named actor and wait until it is gone (its name free again)."""
    import ray

    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            break
        time.sleep(0.1)
    return True
