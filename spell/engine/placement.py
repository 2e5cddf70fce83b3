"""Where the job's actors go: the rollout engines' GPUs, the learner ranks' GPUs and CPUs, checked against
the cluster before anything starts, with what to change when it does not fit."""

from __future__ import annotations

import contextlib

from spell.errors import SpellError


class ClusterResourceError(SpellError, RuntimeError):
    pass


def check_resources(world: int, gpus_per_rank: float, cpus_per_rank: float, available: dict[str, float]) -> None:
    """Fail with what is missing and what to change when the cluster cannot host the learner group."""
    need = {"GPU": world * gpus_per_rank, "CPU": world * cpus_per_rank}
    short = {k: (v, float(available.get(k, 0.0))) for k, v in need.items() if v > float(available.get(k, 0.0)) + 1e-9}
    if short:
        what = ", ".join(f"{v:g} {k} (the cluster has {have:g} free)" for k, (v, have) in short.items())
        raise ClusterResourceError(
            f"the learner needs {what}: engine.learner_ranks={world} x engine.gpus_per_rank={gpus_per_rank:g} / "
            f"cpus_per_rank={cpus_per_rank:g}. Lower engine.learner_ranks, join a bigger cluster "
            "(engine.ray_address), or free the resources other jobs hold"
        )


NOSET_VISIBLE = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"  # Ray leaves CUDA_VISIBLE_DEVICES alone


def actor_env(mask_gpus: bool = True, nccl_nvls: bool = True) -> dict[str, str]:
    """Environment variables every GPU actor starts with (engine.mask_gpus, engine.nccl_nvls)."""
    env = {} if mask_gpus else {NOSET_VISIBLE: "1"}
    return env if nccl_nvls else {**env, "NCCL_NVLS_ENABLE": "0"}


def local_gpu_index(assigned: list[str] | list[int] | None = None) -> int:
    """The CUDA device index of this actor's GPU: 0 where Ray masked the others away, else the id Ray
    assigned it (every GPU visible, engine.mask_gpus false)."""
    import os

    if os.environ.get(NOSET_VISIBLE) != "1":
        return 0
    if assigned is None:
        import ray

        assigned = ray.get_gpu_ids()
    return int(assigned[0]) if assigned else 0


def with_env(options: dict, env: dict[str, str]) -> dict:
    """Actor options with `env` merged into their runtime environment's variables."""
    if not env:
        return options
    runtime = dict(options.get("runtime_env") or {})
    runtime["env_vars"] = {**runtime.get("env_vars", {}), **env}
    return {**options, "runtime_env": runtime}


def rollout_gpus(backend: str, tensor_parallel: int, cluster_gpus: float) -> int:
    """GPUs the policy actor (the rollout engine) takes: vLLM's tensor-parallel size, 1 for transformers,
    none on a CPU cluster."""
    if cluster_gpus < 1:
        return 0
    return tensor_parallel if backend == "vllm" else 1


def check_layout(
    backend: str,
    tensor_parallel: int,
    learner_ranks: int,
    gpus_per_rank: float,
    cpus_per_rank: float,
    cluster: dict[str, float],
    rollout_replicas: int = 1,
) -> None:
    """The whole job fits the cluster: the rollout engines' GPUs plus the learner ranks' (when sharded;
    replicas then share the ranks' GPUs and need none of their own)."""
    engines = 1 if learner_ranks > 1 else rollout_replicas
    gpus = engines * rollout_gpus(backend, tensor_parallel, float(cluster.get("GPU", 0.0)))
    if gpus > float(cluster.get("GPU", 0.0)):
        raise ClusterResourceError(
            f"{engines} rollout engine(s) x {gpus // engines} GPU need {gpus} GPUs; the cluster has "
            f"{cluster.get('GPU', 0.0):g}. Lower engine.rollout_replicas or engine.tensor_parallel"
        )
    if tensor_parallel > 1 and gpus < tensor_parallel:
        raise ClusterResourceError(
            f"engine.tensor_parallel={tensor_parallel} needs {tensor_parallel} GPUs for vLLM; the cluster has "
            f"{cluster.get('GPU', 0.0):g}"
        )
    if learner_ranks > 1:
        rest = {**cluster, "GPU": float(cluster.get("GPU", 0.0)) - gpus, "CPU": float(cluster.get("CPU", 0.0)) - 1}
        check_resources(learner_ranks, gpus_per_rank, cpus_per_rank, rest)


def remove_stale_placement_group(name: str) -> None:
    """A placement group outlives the policy actor that made it (it belongs to the job): the rebuilt
    actor frees the old one first, or its GPUs would stay reserved forever."""
    from ray.util import get_placement_group
    from ray.util.placement_group import remove_placement_group

    with contextlib.suppress(ValueError):  # none of that name
        remove_placement_group(get_placement_group(name))
