"""The sharded learner: PyTorch FSDP2 (`fully_shard`) across ranks, one rank per GPU (or per CPU process
with the `gloo` backend, which is how CI tests it).

Each rank holds a shard of the parameters, gradients and AdamW state; every decoder layer is its own
FSDP unit (all-gathered for its forward, resharded after), the root module the last. Each rank trains
on its part of the batch (`split_by_tokens`) with the batch-wide token normaliser; FSDP averages the
gradients over ranks of a loss scaled by the world size, which sums them, so one step equals the
single-process step on the whole batch. Checkpoints are written sharded with
`torch.distributed.checkpoint` (DCP); `spell export` turns one into a single Hugging Face safetensors
folder. The same `Learner` computes the loss and takes the step, role-blind as ever.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.engine.sync.sharded import LearnerSender

MIXED_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ShardingSettings:
    world_size: int = 2
    mixed_precision: str = "bf16"  # parameter dtype in forward/backward; gradients reduce in fp32
    cpu_offload: bool = False  # parameters, gradients and optimizer state on the CPU between uses
    reshard_after_forward: bool = True  # ZeRO-3; False keeps gathered layers until backward (ZeRO-2)
    gradient_checkpointing: bool = False  # recompute each layer's activations in backward
    sequence_parallel: int = 1  # Ulysses group size: consecutive ranks share each sequence

    @property
    def data_parallel(self) -> int:
        return self.world_size // self.sequence_parallel

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {sorted(MIXED_PRECISION)}")
        if self.sequence_parallel < 1 or self.world_size % self.sequence_parallel:
            raise ValueError(
                f"sequence_parallel={self.sequence_parallel} must divide the learner's world size {self.world_size}"
            )


def shard_units(model: torch.nn.Module) -> list[str]:
    """Names of the submodules wrapped as FSDP units: the decoder layers of a Hugging Face causal LM."""
    for path in ("model.layers", "model.model.layers", "base_model.model.model.layers", "transformer.h"):
        mod: Any = model
        try:
            for part in path.split("."):
                mod = getattr(mod, part)
        except AttributeError:
            continue
        if isinstance(mod, torch.nn.ModuleList) and len(mod):
            return [f"{path}.{i}" for i in range(len(mod))]
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__} to shard")


def apply_fsdp(model: torch.nn.Module, settings: ShardingSettings, device_type: str) -> torch.nn.Module:
    """fully_shard each decoder layer, then the root (FSDP averages gradients over ranks; the worker
    scales its loss by the world size so the average is the sum, on gloo as on NCCL)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mesh = init_device_mesh(device_type, (settings.world_size,))
    dtype = MIXED_PRECISION[settings.mixed_precision]
    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    # offloading is a GPU-memory measure (and needs an accelerator): CPU ranks keep everything where it is
    offload = CPUOffloadPolicy() if settings.cpu_offload and device_type != "cpu" else OffloadPolicy()
    kw = {"mesh": mesh, "mp_policy": mp, "offload_policy": offload}
    for name in shard_units(model):
        fully_shard(model.get_submodule(name), reshard_after_forward=settings.reshard_after_forward, **kw)
    fully_shard(model, **kw)
    return model


def release_step_memory() -> dict[str, float]:
    """Give the step's cached blocks back to the driver, so that a colocated vLLM replica (another process,
    which cannot free this one's cache) finds them when it wakes; report what this rank peaked at and what it
    still reserves (GiB, 0 on the CPU)."""
    if not torch.cuda.is_available():
        return {"rank_peak_gib": 0.0, "rank_reserved_gib": 0.0}
    from spell.engine.models.loading import free_cuda_cache

    peak = torch.cuda.max_memory_reserved() / float(1 << 30)
    free_cuda_cache()
    torch.cuda.reset_peak_memory_stats()
    return {"rank_peak_gib": peak, "rank_reserved_gib": torch.cuda.memory_reserved() / float(1 << 30)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class ShardedLearnerWorker:
    """One rank of the sharded learner; a Ray actor in `LearnerGroup` (or a plain object in a process)."""

    def __init__(self, model_path: str, learner: dict[str, Any], sharding: dict[str, Any], rank: int,
                 attention: str = "auto"):  # fmt: skip
        self.model_path, self.rank, self.attention = model_path, rank, attention
        self.sharding = ShardingSettings(**sharding)
        betas = tuple(learner.get("betas", (0.9, 0.999)))
        self.settings = LearnerSettings(
            **{**learner, "betas": betas, "sequence_parallel": self.sharding.sequence_parallel}
        )
        self.learner: Learner | None = None
        self.steps_seen = 0
        self._sender = LearnerSender(rank)

    def node_address(self) -> tuple[str, int]:
        """Where rank 0 listens for the process-group rendezvous."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def setup(self, master_addr: str, master_port: int, checkpoint: str | None = None) -> dict[str, Any]:
        """Join the process group, load and shard the model, build the optimizer (and restore a sharded
        checkpoint). Every rank must call this at the same time."""
        import torch.distributed as dist
        from transformers import AutoModelForCausalLM

        from spell.engine.models.loading import attention_implementation, enable_activation_checkpointing

        cuda = torch.cuda.is_available()
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        if not dist.is_initialized():
            # under cpu_offload the gradients are CPU DTensors: clip_grad_norm_ reduces them over gloo
            backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
            dist.init_process_group(backend, rank=self.rank, world_size=self.sharding.world_size)
        if cuda:
            from spell.engine.placement import local_gpu_index

            torch.cuda.set_device(local_gpu_index())  # 0 under Ray's masking, else the GPU Ray assigned
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // self.sharding.world_size))
        attn = attention_implementation(torch.device("cuda" if cuda else "cpu"), self.attention)
        sp = self.sharding.sequence_parallel
        if sp > 1:
            from spell.engine.learner import ulysses

            for g in range(self.sharding.world_size // sp):  # every rank creates every group, in order
                group = dist.new_group(list(range(g * sp, (g + 1) * sp)))
                if self.rank // sp == g:
                    ulysses.set_group(group)
            attn = ulysses.register()
        model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=torch.float32, use_safetensors=True, attn_implementation=attn
        )
        # the model stays on the CPU: fully_shard moves one shard unit at a time to the GPU and shards it
        # there, so no rank holds the whole fp32 model on its GPU (28 GiB at 7B)
        if self.sharding.gradient_checkpointing:
            enable_activation_checkpointing(model)
            model.config.use_cache = False
        apply_fsdp(model, self.sharding, "cuda" if cuda else "cpu")
        self.learner = Learner(
            model,
            self.settings,
            pad_id=int(model.config.pad_token_id or 0),
            device=torch.device("cuda") if cuda else None,  # under cpu_offload the parameters live on the CPU
        )
        if checkpoint:
            self.load(checkpoint)
        return {"rank": self.rank, "world": dist.get_world_size(), "backend": dist.get_backend()}

    def micro_batch_count(self, seqs: list[dict[str, Any]]) -> int:
        assert self.learner is not None
        return len(self.learner.micro_batches([TrainSequence.from_dict(s) for s in seqs if s["response_ids"]]))

    def train_step(self, seqs: list[dict[str, Any]], total_tokens: float, micro_batches: int) -> dict[str, float]:
        assert self.learner is not None
        world = self.sharding.world_size
        # normaliser total/world: FSDP's average over ranks of (world x local sum / total) = the batch sum / total
        m = self.learner.train_step([TrainSequence.from_dict(s) for s in seqs], total_tokens / world, micro_batches)
        self.steps_seen += 1
        return {**m, "loss": m["loss"] / world, "tokens": total_tokens, **release_step_memory()}

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Unsharded weights on the CPU, on rank 0 (None elsewhere): for checks; the rollout copies get theirs
        by `send_weights`, and `spell export` reads the DCP shards."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        assert self.learner is not None
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        sd = get_model_state_dict(self.learner.model, options=opts)
        return sd if self.rank == 0 else None

    def host_weight_sync(self, world: int, backend: str) -> tuple[str, int]:
        """Rank 0: the store of the weight-sync group with the rollout copies (spell.engine.sync.sharded)."""
        import ray

        return self._sender.host(ray.util.get_node_ip_address(), world, backend)

    def connect_weight_sync(self) -> None:
        self._sender.connect()

    def send_weights(self, plan: list, wire: str) -> dict[str, float]:
        """Every rank: all-gather each tensor in plan order; rank 0 broadcasts them to the rollout copies."""
        assert self.learner is not None
        with torch.no_grad():
            stats = self._sender.send(self.learner.model, plan, wire)
        release_step_memory()  # the gathered buckets: a colocated replica maps its weights next
        return stats

    def save(self, path: str) -> None:
        """Sharded model and optimizer state (DCP, one file per rank) plus, on rank 0, the HF config and
        tokenizer that `spell export` needs."""
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        assert self.learner is not None
        msd, osd = get_state_dict(self.learner.model, self.learner.optimizer)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(Path(path) / "sharded"))
        if self.rank == 0:
            _copy_model_files(self.model_path, Path(path) / "hf")
        dist.barrier()

    def load(self, path: str) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        assert self.learner is not None
        msd, osd = get_state_dict(self.learner.model, self.learner.optimizer)
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=str(Path(path) / "sharded"))
        set_state_dict(self.learner.model, self.learner.optimizer, model_state_dict=msd, optim_state_dict=osd)

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


_MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt")  # fmt: skip


def _copy_model_files(src: str, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in _MODEL_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, dst / name)


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """A sharded (DCP) checkpoint -> one Hugging Face safetensors folder, in a single process, no GPU.

    spell export runs/<run>/checkpoints/iter_0010 --out exported/
    """
    import torch.distributed.checkpoint as dcp
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    ckpt, out = Path(checkpoint), Path(out)
    hf, sharded = ckpt / "hf", ckpt / "sharded"
    if not (sharded / ".metadata").is_file() or not (hf / "config.json").is_file():
        raise FileNotFoundError(f"{ckpt} is not a sharded spell checkpoint (needs sharded/.metadata and hf/)")
    config = AutoConfig.from_pretrained(hf)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    sd = model.state_dict()
    with warnings.catch_warnings():  # "torch.distributed is uninitialized": single-process load, as intended
        warnings.simplefilter("ignore", UserWarning)
        dcp.load({"model": sd}, checkpoint_id=str(sharded), no_dist=True)
    model.load_state_dict(sd)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(hf).save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


__all__ = [
    "ShardedLearnerWorker",
    "ShardingSettings",
    "apply_fsdp",
    "export_checkpoint",
    "shard_units",
]
