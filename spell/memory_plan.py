"""Per-GPU memory budget of a config's layout, before anything starts (`spell plan --config X`).

Arithmetic only, from the model's config.json (or a known shape) and the config: learner weights,
gradients and AdamW state (fp32 masters, spec Part A 'loss'), activations and logits of one micro-batch,
the vLLM share (weights + KV cache) and CUDA contexts, in the two phases a GPU lives through: generating
(vLLM awake, the learner's weights and optimizer resident) and training (vLLM asleep). Assumptions are
listed in ASSUMPTIONS and printed with every plan; `tests/test_memory_plan.py` holds the arithmetic
against memory measured on CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = float(1 << 30)
CUDA_CONTEXT_GIB = 0.6  # per process per GPU (torch 2.x, lazy module loading)
NCCL_BUFFERS_GIB = 0.5  # per learner rank
VLLM_ASLEEP_GIB = 2.0  # what a level-2-asleep vLLM engine keeps (CUDA graph pools, buffers): not yet measured
LEARNER_RESIDUE = 0.05  # share of a rank's step transients still reserved after empty_cache (fragmentation)
LOGIT_BYTES_FP32, LOGIT_BYTES_BF16 = 12, 20  # per kept logit: see ASSUMPTIONS
CHUNK_LOGIT_BYTES_FP32, CHUNK_LOGIT_BYTES_BF16 = 8, 10  # per logit of one chunk (engine.logprob_chunk_tokens)
VLLM_ACTIVATION_GIB = 1.5  # vLLM's own profiled activation peak, outside the KV cache
HEADROOM = 0.95  # the share of a GPU's memory a plan may fill: the caching allocator fragments the rest
SHORT_PROMPT = 1024  # a verifier/grounding prompt: the densest response share of any training row
ASSUMPTIONS = (
    "AdamW: fp32 master weights, gradients and two moments (16 B/param); between steps the gradients are freed",
    "autocast keeps a bf16 copy of the weights during a single-GPU step (2 B/param); LoRA: bf16 frozen base",
    "activations per token: with gradient checkpointing one hidden state per layer plus one layer "
    "recomputed with its gradients (2 x (12 x hidden + 3 x intermediate) values), without it 12 x hidden + "
    "3 x intermediate values per layer (fitted on CPU: tests/test_memory_plan.py); attention is "
    "memory-efficient (flash-attn or SDPA's kernels), no T x T score matrix",
    f"logits for the response tokens of a micro-batch only (logits_to_keep): train_token_budget x "
    f"max_new/(max_new+{SHORT_PROMPT}) x vocab x {LOGIT_BYTES_BF16} B in bf16 (bf16 logits, fp32 copy, fp32 "
    f"log-softmax kept for backward, its fp32 gradient, the bf16 gradient) or {LOGIT_BYTES_FP32} B in fp32; "
    f"with engine.logprob_chunk_tokens only one chunk's: chunk x vocab x {CHUNK_LOGIT_BYTES_BF16} B in bf16 (bf16 "
    f"logits, their fp32 copy, logsumexp's fp32 temporary) or {CHUNK_LOGIT_BYTES_FP32} B in fp32, plus in bf16 "
    "vocab x hidden x 6 B where the head trains (a chunk's bf16 head-gradient product, the fp32 accumulator)",
    "a micro-batch holds max(train_token_budget, the longest training row = responder.max_prompt_tokens + "
    "rollout.max_new_tokens) tokens: a longer row gets a row of its own",
    "shared-prefix and packed rows carry a dense T x T additive mask in the compute dtype (SDPA without "
    "flash-attn's varlen kernel)",
    "FSDP2: two bf16 layers in flight plus the root unit (embeddings, untied head) gathered for the whole step",
    f"the learner ranks empty their allocator cache after the step and after their send "
    f"(spell/engine/learner/fsdp.py); {LEARNER_RESIDUE:.0%} of the step's transients stays reserved "
    "(fragmentation; a colocated vLLM replica, another process, cannot use it)",
    f"vLLM takes gpu_memory_utilization x GPU memory when awake (weights/TP + ~{VLLM_ACTIVATION_GIB} GiB "
    f"activations + KV cache), ~{VLLM_ASLEEP_GIB} GiB asleep (unmeasured); CUDA context {CUDA_CONTEXT_GIB} GiB per "
    f"process, NCCL {NCCL_BUFFERS_GIB} GiB per rank; a plan may fill {HEADROOM:.0%} of a GPU (fragmentation)",
)

# Known shapes for the presets' models, for planning on a machine that does not hold the weights.
KNOWN_SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-7b": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                   "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
                   "tie_word_embeddings": False, "model_type": "qwen2", "max_position_embeddings": 32768},
    "smollm2": {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True, "model_type": "llama",
                "max_position_embeddings": 8192},
    "qwen3-4b": {"hidden_size": 2560, "num_hidden_layers": 36, "num_attention_heads": 32, "head_dim": 128,
                 "num_key_value_heads": 8, "intermediate_size": 9728, "vocab_size": 151936,
                 "tie_word_embeddings": True, "model_type": "qwen3", "max_position_embeddings": 262144},
}  # fmt: skip


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    max_positions: int

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> ModelShape:
        heads = int(c["num_attention_heads"])
        return cls(
            hidden=int(c["hidden_size"]),
            layers=int(c["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(c.get("num_key_value_heads", heads)),
            head_dim=int(c.get("head_dim") or c["hidden_size"] // heads),
            intermediate=int(c["intermediate_size"]),
            vocab=int(c["vocab_size"]),
            tied=bool(c.get("tie_word_embeddings", False)),
            qkv_bias=bool(c.get("attention_bias", c.get("model_type") == "qwen2")),
            max_positions=int(c.get("max_position_embeddings", 1 << 30)),
        )

    def layer_params(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn = self.hidden * (q + 2 * kv) + q * self.hidden + ((q + 2 * kv) if self.qkv_bias else 0)
        return attn + 3 * self.hidden * self.intermediate + 2 * self.hidden  # Qwen3's q/k norms left out (2 x head_dim)

    @property
    def params(self) -> int:
        embed = self.vocab * self.hidden
        return embed * (1 if self.tied else 2) + self.layers * self.layer_params() + self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def model_shape(path: str) -> ModelShape:
    """From the model folder's config.json, else a known preset model named in the path."""
    cfg = Path(path) / "config.json"
    if cfg.is_file():
        return ModelShape.from_config(json.loads(cfg.read_text()))
    key = next((k for k in KNOWN_SHAPES if k in path.lower()), None)
    if key is None:
        raise FileNotFoundError(
            f"spell plan: no config.json under {path!r} and no known shape for it ({', '.join(KNOWN_SHAPES)}); "
            "pass --set model.path=<a local model folder>"
        )
    return ModelShape.from_config(KNOWN_SHAPES[key])


@dataclass
class Budget:
    """One kind of GPU in the layout (or the host for a CPU run), its items per phase in GiB."""

    what: str
    count: int
    items: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (generating, training)

    def add(self, name: str, generating: float, training: float) -> None:
        self.items[name] = (generating / GIB, training / GIB)

    def peak(self) -> tuple[float, float]:
        return sum(g for g, _ in self.items.values()), sum(t for _, t in self.items.values())


@dataclass
class MemoryPlan:
    budgets: list[Budget]
    capacity_gib: float | None  # per GPU; None for a CPU run
    gpus_needed: int
    gpus_available: int | None
    problems: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems

    def table(self) -> str:
        if self.capacity_gib:
            have = "?" if self.gpus_available is None else self.gpus_available
            lines = [f"layout: {self.gpus_needed} GPU(s) needed, {have} available, {self.capacity_gib:g} GiB each"]
        else:
            lines = ["layout: a CPU run (the policy actor's host memory)"]
        for b in self.budgets:
            gen, train = b.peak()
            lines.append(f"{b.what} (x{b.count}): generating {gen:.1f} GiB, training {train:.1f} GiB")
            lines += [f"    {n:<34} {g:>7.2f} {t:>7.2f}" for n, (g, t) in b.items.items()]
        lines.append("assumptions: " + "; ".join(ASSUMPTIONS))
        lines += [f"DOES NOT FIT: {p}" for p in self.problems] or ["fits"]
        return "\n".join(lines)


def activation_bytes(shape: ModelShape, tokens: int, checkpointing: bool, compute_bytes: int) -> float:
    """What the backward pass keeps for `tokens` tokens (ASSUMPTIONS: per-token values per layer)."""
    per_layer = 12 * shape.hidden + 3 * shape.intermediate
    if checkpointing:
        return tokens * (shape.layers * shape.hidden + 2 * per_layer) * compute_bytes
    return tokens * shape.layers * per_layer * compute_bytes


def logits_bytes(
    shape: ModelShape, kept: float, compute_bytes: int = 4, chunk: int = 0, head_grad: bool = True
) -> float:
    """Logits of the `kept` response tokens and what the log-softmax backward holds (ASSUMPTIONS); with a
    chunked head, one chunk's logits and (a trained head: not under LoRA) the head gradient's accumulator."""
    if chunk <= 0:
        return kept * shape.vocab * (LOGIT_BYTES_FP32 if compute_bytes == 4 else LOGIT_BYTES_BF16)
    if compute_bytes == 4:
        return min(kept, chunk) * shape.vocab * CHUNK_LOGIT_BYTES_FP32
    return min(kept, chunk) * shape.vocab * CHUNK_LOGIT_BYTES_BF16 + head_grad * shape.vocab * shape.hidden * 6


def micro_batch_tokens(cfg: Any) -> int:
    """The most tokens one micro-batch holds: the budget, or the longest training row, which gets its own."""
    return max(cfg.engine.train_token_budget, cfg.responder.max_prompt_tokens + cfg.rollout.max_new_tokens)


def _learner_step(cfg: Any, shape: ModelShape, compute_bytes: int) -> tuple[float, float, float]:
    """Activations, logits and the attention mask of the largest micro-batch (bytes)."""
    tokens, new = micro_batch_tokens(cfg), cfg.rollout.max_new_tokens
    act = activation_bytes(shape, tokens, cfg.model.gradient_checkpointing, compute_bytes)
    mask = tokens * tokens * compute_bytes if cfg.engine.shared_prefix or cfg.engine.packing else 0.0
    # the densest response share is a budget of short-prompt rows; a longest row keeps only its answer
    kept = max(cfg.engine.train_token_budget * new / (new + SHORT_PROMPT), min(new, tokens))
    chunk, head_grad = cfg.engine.logprob_chunk_tokens, cfg.model.lora_rank == 0
    return act, logits_bytes(shape, kept, compute_bytes, chunk, head_grad), mask


def _lora_params(cfg: Any, shape: ModelShape) -> int:
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    h, i = shape.hidden, shape.intermediate
    pairs = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]  # q k v o gate up down
    return cfg.model.lora_rank * shape.layers * sum(a + b for a, b in pairs)


def plan_memory(cfg: Any, shape: ModelShape, gpus_available: int | None, gpu_gib: float | None) -> MemoryPlan:
    """The budget of `cfg`'s layout on GPUs of `gpu_gib` each (None: a CPU run, the policy actor's host RAM)."""
    from spell.engine.spec import run_max_context

    eng, p = cfg.engine, shape.params
    lora = cfg.model.lora_rank > 0
    on_gpu = gpu_gib is not None
    compute = 2 if on_gpu and cfg.model.dtype != "float32" else 4
    act, logits, mask = _learner_step(cfg, shape, compute)
    if lora:
        resident, grads = p * compute + _lora_params(cfg, shape) * 12, _lora_params(cfg, shape) * 4
    else:
        resident, grads = p * 12, p * 4  # fp32 master + two AdamW moments; fp32 gradients during the step
    budgets: list[Budget] = []
    ranks = eng.learner_ranks if eng.learner_ranks > 1 else 0
    vllm = eng.backend == "vllm"
    context = min(eng.max_model_len or run_max_context(cfg), shape.max_positions)
    engine_bytes = eng.gpu_memory_utilization * (gpu_gib or 0) * GIB
    ctx = CUDA_CONTEXT_GIB * GIB if on_gpu else 0.0

    def add_vllm(b: Budget, share: float = eng.gpu_memory_utilization) -> None:
        awake = share * (gpu_gib or 0) * GIB
        b.add("vLLM engine (weights + KV cache)", awake, VLLM_ASLEEP_GIB * GIB if eng.sleep_between_phases
              else awake)  # fmt: skip
        b.add("CUDA context (vLLM)", ctx, ctx)

    policy = Budget("policy actor" + (": learner + vLLM engine" if vllm and not ranks else ""), 1)
    if ranks:  # the sharded learner trains; the policy actor's full copy lives on the CPU
        if vllm:  # its engine has a GPU to itself (engine.policy_gpu_memory_utilization)
            add_vllm(policy, eng.policy_gpu_memory_utilization or eng.gpu_memory_utilization)
        per = Budget("learner rank" + (" + colocated vLLM replica" if vllm and eng.rollout_replicas > 1 else ""),
                     ranks)  # fmt: skip
        layer = shape.layer_params() * 2
        root = shape.vocab * shape.hidden * 2 * (1 if shape.tied else 2)  # embeddings and untied head, bf16
        gathered = 2 * layer + root
        per.add("weights + AdamW state (sharded)", resident / ranks, resident / ranks)
        per.add("gradients (sharded)", 0, grads / ranks)
        per.add("gathered bf16 layers + root unit", 0, gathered)
        per.add("activations (one micro-batch)", 0, act)
        per.add("logits (response tokens)", 0, logits)
        per.add("attention mask (shared/packed rows)", 0, mask)
        transients = grads / ranks + gathered + act + logits + mask
        per.add("learner reserve after empty_cache", LEARNER_RESIDUE * transients, 0)
        per.add("CUDA context + NCCL", ctx + NCCL_BUFFERS_GIB * GIB, ctx + NCCL_BUFFERS_GIB * GIB)
        if vllm and eng.rollout_replicas > 1:
            add_vllm(per)
        budgets = [policy, per] if vllm else [per]
    else:
        policy.add("weights + AdamW state", resident, resident)
        policy.add("gradients", 0, grads)
        if on_gpu and not lora:
            policy.add("bf16 autocast weight copy", 0, p * 2)
        policy.add("activations (one micro-batch)", 0, act)
        policy.add("logits (response tokens)", 0, logits)
        policy.add("attention mask (shared/packed rows)", 0, mask)
        if on_gpu:
            policy.add("CUDA context", ctx, ctx)
        if vllm:
            add_vllm(policy)
        elif not on_gpu:  # transformers generation: the KV cache of one generation batch, fp32
            kv = eng.generation_token_budget * shape.kv_bytes_per_token(4)
            policy.add("KV cache (one generation batch)", kv, 0)
        budgets = [policy]
        if eng.rollout_replicas > 1:
            rep = Budget("rollout replica", eng.rollout_replicas - 1)
            if vllm:
                add_vllm(rep)
            budgets.append(rep)
    needed = (1 if vllm or not ranks else 0) + ranks * (eng.gpus_per_rank > 0)
    if not ranks and eng.rollout_replicas > 1 and on_gpu:
        needed += (eng.rollout_replicas - 1) * eng.tensor_parallel
    plan = MemoryPlan(budgets, gpu_gib, needed if on_gpu else 0, gpus_available)
    if on_gpu:
        _check(plan, cfg, shape, context, engine_bytes, logits)
    return plan


def _check(plan: MemoryPlan, cfg: Any, shape: ModelShape, context: int, engine_bytes: float, logits: float) -> None:
    eng, cap = cfg.engine, (plan.capacity_gib or 0.0) * HEADROOM
    if plan.gpus_available is not None and plan.gpus_needed > plan.gpus_available:
        plan.problems.append(
            f"the layout needs {plan.gpus_needed} GPUs, the cluster has {plan.gpus_available}: lower "
            "engine.learner_ranks or engine.rollout_replicas"
        )
    for b in plan.budgets:
        gen, train = b.peak()
        for phase, total in (("generating", gen), ("training", train)):
            if total > cap:
                biggest = max(b.items, key=lambda n: b.items[n][phase == "training"])
                plan.problems.append(
                    f"{b.what}: {total:.1f} GiB while {phase} > {cap:.1f} GiB usable per GPU (largest: {biggest}, "
                    f"{b.items[biggest][phase == 'training']:.1f} GiB); {_advice(biggest)}"
                )
    if eng.backend == "vllm":
        weights = shape.params * 2 / eng.tensor_parallel
        kv = engine_bytes - weights - VLLM_ACTIVATION_GIB * GIB
        one = context * shape.kv_bytes_per_token() / eng.tensor_parallel
        if kv < one:
            plan.problems.append(
                f"vLLM cannot start: {max(kv, 0) / GIB:.1f} GiB left for KV cache after {weights / GIB:.1f} GiB of "
                f"weights, one {context}-token sequence needs {one / GIB:.1f} GiB; raise "
                "engine.gpu_memory_utilization or lower engine.max_model_len"
            )


def _advice(item: str) -> str:
    return {
        "logits (response tokens)": "set engine.logprob_chunk_tokens (e.g. 4096) or lower engine.train_token_budget",
        "activations (one micro-batch)": "set model.gradient_checkpointing or lower engine.train_token_budget",
        "vLLM engine (weights + KV cache)": "lower engine.gpu_memory_utilization",
        "weights + AdamW state (sharded)": "raise engine.learner_ranks or set engine.cpu_offload",
        "weights + AdamW state": "use model.lora_rank or a sharded learner (engine.learner_ranks)",
    }.get(item, "lower engine.train_token_budget or engine.gpu_memory_utilization")


def local_gpus() -> tuple[int, float] | None:
    """(count, GiB each) of this machine's CUDA GPUs, or None without any."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.device_count(), torch.cuda.get_device_properties(0).total_memory / GIB


def host_available_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None


def needs_gpus(cfg: Any) -> bool:
    """The layout places something on GPUs: vLLM, or sharded learner ranks with GPUs of their own."""
    return cfg.engine.backend == "vllm" or (cfg.engine.learner_ranks > 1 and cfg.engine.gpus_per_rank > 0)


def check_before_run(cfg: Any) -> str | None:
    """What `spell run` checks before anything starts: the plan on this machine's GPUs (or host memory
    for a CPU run); the first problem as one line, or None. Tiny test models and remote clusters whose
    GPUs this machine cannot see are not planned here (`spell plan --gpus N --gpu-memory G` does)."""
    path = cfg.model.path
    if path.startswith("tiny:"):
        return None
    try:
        shape = model_shape(path)
    except FileNotFoundError:
        return None  # the engine reports a missing model itself, with its own message
    gpus = local_gpus()
    if gpus is None:
        if needs_gpus(cfg):
            return None
        plan = plan_memory(cfg, shape, None, None)
        need, have = max(plan.budgets[0].peak()), host_available_gib()
        if have is not None and need > have:
            return (
                f"the policy actor needs ~{need:.1f} GiB of host memory, {have:.1f} GiB is available: lower "
                "engine.train_token_budget or engine.generation_token_budget (spell plan --config shows the budget)"
            )
        return None
    plan = plan_memory(cfg, shape, gpus[0] if cfg.engine.ray_address == "local" else None, gpus[1])
    return None if plan.fits else plan.problems[0] + " (spell plan --config shows the whole budget)"


__all__ = [
    "ASSUMPTIONS",
    "GIB",
    "Budget",
    "MemoryPlan",
    "ModelShape",
    "check_before_run",
    "local_gpus",
    "model_shape",
    "needs_gpus",
    "plan_memory",
]
