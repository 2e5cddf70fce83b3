"""The dtype the transformers backend's prompt pass and decode Linears compute in (engine.prefill_dtype,
engine.decode_dtype), 'auto' resolved against the machine once, where the generator is built."""

from __future__ import annotations

import torch

BF16_CPU_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's feature checks


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): only there does a bf16 copy of the
    weights compute faster than fp32 (elsewhere oneDNN emulates it, slower)."""
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in BF16_CPU_PROBES)


def rollout_dtype(
    setting: str, model_dtype: torch.dtype, device: str, native_bf16: bool | None = None
) -> torch.dtype | None:
    """None (compute in the model's own weights) or the dtype of a copy to compute in.

    'auto' is bf16 exactly where the model computes in fp32 on a CPU with native bf16 (the prompt pass
    then runs about 2.5x faster, bench/generation.py, and the sampler stays far closer to the fp32 policy
    than one GRPO step moves it, bench/rollout_precision.py); the model's own dtype elsewhere (a GPU
    model computes in bf16 already). 'model': the model's own. A dtype name: that dtype."""
    if setting == "model":
        return None
    if setting == "auto":
        native = native_bf16_cpu() if native_bf16 is None else native_bf16
        return torch.bfloat16 if device == "cpu" and model_dtype == torch.float32 and native else None
    dtype = getattr(torch, setting)
    return None if dtype == model_dtype else dtype


def dtype_names(dtypes: dict[str, torch.dtype | None]) -> dict[str, str]:
    """`{"prefill": bf16, ...}` as Policy.info() reports it: `{"prefill_dtype": "bfloat16", ...}` ('model': none)."""
    return {f"{k}_dtype": "model" if v is None else str(v).replace("torch.", "") for k, v in dtypes.items()}
