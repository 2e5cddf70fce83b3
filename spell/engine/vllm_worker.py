"""Mixed into every vLLM worker process (`worker_extension_cls`), so weights reach all tensor-parallel
ranks through vLLM's public `collective_rpc`, not through `driver_worker`, which the multiprocess
executor (tensor_parallel > 1) does not have. Imports nothing from vLLM: vLLM imports it by name."""

from __future__ import annotations

from typing import Any

EXTENSION = "spell.engine.vllm_worker.SpellWorkerExtension"


class SpellWorkerExtension:
    model_runner: Any  # provided by the vLLM worker this class is mixed into

    def spell_load_weights(self, weights: Any) -> None:
        """Full (unsharded) tensors by their Hugging Face names; each rank's loader keeps its own shard.

        vLLM >= 0.32 post-processes weights after loading (the CPU build repacks them for its kernels), so a
        second `load_weights` finds parameters without their loaders; its `reload_weights` (in place, layer
        by layer, every weight in one call) is the supported route there; older workers load directly."""
        reload = getattr(self, "reload_weights", None)
        if reload is not None:
            reload(weights_iterator=iter(weights), is_checkpoint_format=True)
        else:
            self.model_runner.model.load_weights(weights=weights)
