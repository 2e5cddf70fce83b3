"""A group of Ray actors that together are one sharded learner (FSDP2, one actor per GPU).

    group = LearnerGroup(model_path, LearnerSettings(), ShardingSettings(world_size=8), gpus_per_rank=1)
    metrics = group.train_step(seqs)          # one GRPO step on the whole batch, split by tokens
    group.send_weights_async(plan, "bfloat16")  # rank 0 broadcasts to the rollout copies (learner_sync)
    group.save("runs/x/checkpoints/iter_0001")  # sharded; `spell export` makes an HF folder of it

The actors are placed by a Ray placement group (`engine.placement`: PACK fills as few nodes as
possible and spreads over several when one is not enough; STRICT_PACK keeps one node; SPREAD puts one
rank per node first), so the same code runs on one GPU box or a multi-node cluster. A cluster without
the resources the config asks for is a clear error before anything starts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from spell.engine.batching import split_by_tokens
from spell.engine.learner.core import LearnerSettings
from spell.engine.learner.fsdp import ShardedLearnerWorker, ShardingSettings
from spell.engine.learner.shared_prefix import prefix_units, unit_tokens
from spell.engine.placement import check_resources, remove_stale_placement_group, with_env


class LearnerGroup:
    def __init__(
        self,
        model_path: str,
        learner: LearnerSettings,
        sharding: ShardingSettings,
        gpus_per_rank: float = 1.0,
        cpus_per_rank: float = 1.0,
        checkpoint: str | None = None,
        name: str = "spell-learner",
        placement: str = "PACK",
        gpu_share: float = 1.0,
        env: dict[str, str] | None = None,
        attention: str = "auto",
    ):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        world = sharding.world_size
        remove_stale_placement_group(f"{name}-pg")
        check_resources(world, gpus_per_rank, cpus_per_rank, ray.available_resources())
        bundle = {"CPU": cpus_per_rank, **({"GPU": gpus_per_rank} if gpus_per_rank else {})}
        self.pg = placement_group([bundle] * world, strategy=placement, name=f"{name}-pg")
        ray.get(self.pg.ready(), timeout=600)
        cls = ray.remote(ShardedLearnerWorker)
        lset = asdict(learner)
        self.actors = [
            cls.options(
                **with_env(
                    {
                        "num_cpus": cpus_per_rank,
                        "num_gpus": gpus_per_rank * gpu_share,  # < 1: a rollout replica takes the rest of this GPU
                        "scheduling_strategy": PlacementGroupSchedulingStrategy(
                            self.pg, placement_group_bundle_index=r
                        ),
                    },
                    env or {},
                )
            ).remote(model_path, lset, asdict(sharding), r, attention)
            for r in range(world)
        ]
        addr, port = ray.get(self.actors[0].node_address.remote())
        self.info = ray.get([a.setup.remote(addr, port, checkpoint) for a in self.actors])
        self.world = world
        self.sp = sharding.sequence_parallel
        self.settings = learner

    def _all(self, method: str, *per_rank_args: Any, same: tuple[Any, ...] = ()) -> list[Any]:
        import ray

        calls = []
        for r, a in enumerate(self.actors):
            args = [x[r] for x in per_rank_args] + list(same)
            calls.append(getattr(a, method).remote(*args))
        return ray.get(calls)

    def train_step(self, seqs: list[dict[str, Any]]) -> dict[str, float]:
        """One step on the whole batch: split by tokens, equal micro-batch counts, summed gradients."""
        seqs = [s for s in seqs if len(s["response_ids"])]
        if not seqs:  # nothing to train on: no step, and not a skipped one either
            return {"loss": 0.0, "grad_norm": 0.0, "tokens": 0.0, "skipped": 1.0, "empty": 1.0, "seconds": 0.0}
        groups = [[seqs[i] for i in idx] for idx in self._split(seqs)]
        parts = [groups[r // self.sp] for r in range(self.world)]  # a sequence-parallel group shares its part
        total = float(sum(len(s["response_ids"]) for s in seqs))
        n_micro = max(self._all("micro_batch_count", parts))
        out = self._all("train_step", parts, same=(total, n_micro))
        m = dict(out[0])  # loss (summed over ranks), grad norm and skip decision are global already
        m["sequences"] = float(sum(o.get("sequences", 0.0) for o in out)) / self.sp
        m["seconds"] = max(o.get("seconds", 0.0) for o in out)
        m["padding_fraction"] = sum(o.get("padding_fraction", 0.0) for o in out) / len(out)
        m["micro_batches"] = float(n_micro)
        for key in ("computed_tokens", "sequence_tokens"):  # summed over data-parallel ranks
            m[key] = sum(o.get(key, 0.0) for o in out) / self.sp
        for key in ("rank_peak_gib", "rank_reserved_gib"):  # the fullest rank's, after its cache was emptied
            m[key] = max(o.get(key, 0.0) for o in out)
        return m

    def _split(self, seqs: list[dict[str, Any]]) -> list[list[int]]:
        """Sequence indices per data-parallel rank, balanced by tokens; with shared prefixes a prompt group
        stays on one rank, so its prompt is computed once."""
        world = self.world // self.sp
        if not self.settings.shared_prefix:
            return split_by_tokens([len(s["prompt_ids"]) + len(s["response_ids"]) for s in seqs], world)
        prompts, responses = [s["prompt_ids"] for s in seqs], [s["response_ids"] for s in seqs]
        units = prefix_units(prompts, responses, self.settings.token_budget)
        parts = split_by_tokens([unit_tokens(prompts, responses, u) for u in units], world)
        return [sorted(i for u in part for i in units[u]) for part in parts]

    def full_state_dict(self) -> dict[str, Any]:
        return self._all("full_state_dict")[0]

    def host_weight_sync(self, world: int, backend: str) -> tuple[str, int]:
        """Rank 0 hosts the weight-sync group of `world` members (itself and the rollout copies)."""
        import ray

        return tuple(ray.get(self.actors[0].host_weight_sync.remote(world, backend)))  # type: ignore[return-value]

    def connect_weight_sync_async(self) -> Any:
        return self.actors[0].connect_weight_sync.remote()

    def send_weights_async(self, plan: list, wire: str) -> list[Any]:
        """Futures of every rank's part in one broadcast (rank 0's carries the sender's stats)."""
        return [a.send_weights.remote(plan, wire) for a in self.actors]

    def save(self, path: str) -> None:
        self._all("save", same=(path,))

    def shutdown(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        try:
            self._all("close")
        finally:
            for a in self.actors:
                ray.kill(a)
            remove_placement_group(self.pg)
