"""Mixed into every vLLM worker process (`worker_extension_cls`), so weights reach all tensor-parallel
ranks through vLLM's public `collective_rpc`, not through `driver_worker`, which the multiprocess
executor (tensor_parallel > 1) does not have. Imports nothing from vLLM: vLLM imports it by name."""

from __future__ import annotations

from typing import Any

EXTENSION = "spell.engine.vllm_worker.SpellWorkerExtension"


class SpellWorkerExtension:
    model_runner: Any  # provided by the vLLM worker this class is mixed into

    def spell_load_weights(self, weights: list[tuple[str, Any]]) -> int:
        """Full (unsharded) tensors by their Hugging Face names; each rank's loader keeps its own shard."""
        self.model_runner.model.load_weights(weights=weights)
        return len(weights)
