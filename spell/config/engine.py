"""Config sections of the machinery: the model, the engines and their scale (not in the paper unless
a help text names its section)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from spell.config.base import _field, _Section
from spell.vocab import RoleName


class ModelConfig(_Section):
    path: str = _field("", "Hugging Face model directory (safetensors) for the policy.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _field(
        "auto", "'auto': bf16 on GPU, fp32 on CPU (engines issue)."
    )
    gradient_checkpointing: bool = _field(False, "Recompute activations in the backward pass to save memory.")
    trust_remote_code: bool = _field(False, "Allow model code from the model directory; off for safety.")
    lora_rank: int = _field(0, "LoRA rank through peft; 0 trains all weights.", ge=0)
    lora_alpha: float = _field(32.0, "LoRA alpha.", gt=0)


class EngineConfig(_Section):
    backend: Literal["transformers", "vllm", "scripted"] = _field(
        "transformers",
        "Rollout engine: `transformers` (CPU default, also GPU), `vllm` (GPU), or `scripted` "
        "(rule-played roles for pipeline tests; the model is still trained).",
    )
    scripted_roles: list[RoleName] = _field(
        [],
        "Roles played by rule (spell/engine/rollout/scripted.py) instead of by the model, the others generating as "
        "usual: a controlled learning check (e.g. a rule questioner and verifier around a model responder); "
        "every role's samples are still trained on. Not for real runs.",
    )
    generation_token_budget: int = _field(
        16384, "Prompt+completion tokens per generation batch (transformers backend).", ge=1
    )
    prefill_dtype: Literal["auto", "model", "bfloat16"] = _field(
        "auto",
        "Compute dtype of the transformers backend's prompt pass. 'auto': bf16 where the model computes in fp32 on "
        "a CPU that multiplies bf16 in hardware (AVX512-BF16 or AMX), the model's own dtype elsewhere (a GPU, "
        "other CPUs, vLLM). 'bfloat16': a bf16 copy of the weights, re-cast from the learner's at every generate "
        "call (it never lags), prefills; its KV cache is cast back and the model decodes. 'model': the policy's "
        "own weights. Measured on the default model, this AVX512-BF16 CPU: the prompt pass 1.5-1.8x faster "
        "(bench/rollout_precision.py; 2.3x and 2.2x the question and respond rounds of before issue 26, "
        "bench/generation.py); the sampler then stays within KL 3-5e-4 a token of the fp32 policy the learner "
        "scores, 1/50 of what one default GRPO step moves the policy (2.3e-2), with 0-0.4% of drawn tokens "
        "outside a PPO clip's 0.8-1.2 ratio (bench/rollout_precision.py). Not in the paper: a CPU speed switch "
        "(issue 26). vLLM: model.dtype.",
    )
    decode_dtype: Literal["auto", "model", "bfloat16"] = _field(
        "model",
        "Dtype of the Linear layers' matmuls in the transformers backend's decode steps. 'model': the policy's "
        "own. 'bfloat16': a bf16 copy of the Linear weights (half their fp32 size), re-cast from the learner's "
        "at every generate call (with engine.decode_step=direct, the step's packed copy is the bf16 one); norms, "
        "attention and the KV cache stay in the model's dtype. Measured on this AVX512-BF16 CPU: 1.5x the fp32 "
        "model's forward step, about 1.15x the fp32 direct step (bench/generation.py); tokens differ from fp32's. "
        "'auto': as engine.prefill_dtype's. Not in the paper: a CPU speed switch (issue 26); off by default: it "
        "doubles the sampler's distance from the policy (KL 9e-4 a token, bench/rollout_precision.py) for a few "
        "percent of a round. vLLM: model.dtype.",
    )
    decode_step: Literal["direct", "model"] = _field(
        "direct",
        "How the transformers backend runs a decode step. 'direct': for a Llama-family model (Llama, Qwen2) on "
        "the CPU, a step written out over a copy of the Linear weights packed for oneDNN's small-batch kernel, the "
        "n samples of a prompt attending to one copy of its KV cache (spell/engine/rollout/llama_decode.py; "
        "about 2x the model's own forward a step on this CPU, bench/decode_step.py); the same arithmetic in "
        "another summation order (fp32 rounding apart, the same logits); other models fall back to 'model'. "
        "'model': the model's own forward. Not in the paper: a CPU speed switch (issue 26). vLLM: its own kernels.",
    )
    train_token_budget: int = _field(8192, "Tokens per learner micro-batch (padding included).", ge=1)
    max_model_len: int = _field(
        0,
        "Longest prompt+completion a rollout engine serves (vLLM's max_model_len, its KV cache sizing); 0: "
        "the longest the run asks for, max(responder.max_prompt_tokens, eval.max_input_tokens) + "
        "max(rollout.max_new_tokens, eval.max_new_tokens), never above the model's position limit.",
        ge=0,
    )
    ray_address: str = _field(
        "local", "'local' starts a private Ray; 'auto' or 'host:port' or 'ray://...' joins a cluster."
    )
    warm_policy_seconds: float = _field(
        1800.0,
        "Under `spell deploy` the policy actor outlives each flow run (a detached actor in the deploy's Ray), so "
        "the next deployment run of the same run skips the cold start; it ends itself after this many idle "
        "seconds. 0: every flow run builds its own.",
        ge=0,
    )
    actor_restarts: int = _field(
        2, "Times a stage is retried after the policy actor died (rebuilt from the latest checkpoint).", ge=0
    )
    shared_prefix: bool = _field(
        True,
        "Compute each prompt once per group in the GRPO step: the G answers of a question (and the votes on an "
        "answer) go in one row [prompt, r1..rG], each answer attending to the prompt and to itself only, with "
        "the same loss and gradients as separate rows. A dense SDPA mask (CPU), flex_attention's block mask "
        "where the model uses it; off with flash-attn's varlen kernel and with sequence_parallel > 1.",
    )
    logprob_chunk_tokens: int = _field(
        0,
        "The GRPO step's output head and log-softmax this many response tokens at a time, recomputing each chunk "
        "in the backward (spell.engine.learner.chunked_head), so the [tokens, vocab] logits never exist at once: "
        "the largest term of a long-context step (`spell plan`). Same loss and gradients; one more head matmul "
        "per token. 0: the whole micro-batch at once. Not in the paper (a memory layout).",
        ge=0,
    )
    packing: bool = _field(
        False,
        "Pack training sequences into rows without padding (variable-length attention: flash-attn when "
        "installed, a block-diagonal SDPA mask otherwise). For long contexts (paper: 16K prompts).",
    )
    learner_ranks: int = _field(
        1,
        "Learner ranks. 1: the policy actor trains. >1: FSDP2 shards the model over this many Ray actors "
        "(one GPU each; gloo CPU processes when engine.gpus_per_rank=0).",
        ge=1,
    )
    gpus_per_rank: float = _field(1.0, "GPUs per learner rank: 1 on GPU clusters, 0 for CPU ranks.", ge=0)
    cpus_per_rank: float = _field(1.0, "CPUs reserved per learner rank.", gt=0)
    placement: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] = _field(
        "PACK", "How learner ranks are placed over nodes (a Ray placement group strategy)."
    )
    mixed_precision: Literal["bf16", "fp16", "fp32"] = _field(
        "bf16", "Parameter dtype in a sharded learner's forward and backward; gradients reduce in fp32."
    )
    cpu_offload: bool = _field(False, "Sharded learner: keep parameters and optimizer state on the CPU between uses.")
    sequence_parallel: int = _field(
        1,
        "Ulysses sequence parallelism: this many learner ranks share each sequence (attention heads split "
        "across them). For 16K-100K-token sequences; must divide engine.learner_ranks.",
        ge=1,
    )
    tensor_parallel: int = _field(1, "vLLM tensor-parallel size (GPUs per rollout engine).", ge=1)
    rollout_replicas: int = _field(
        1,
        "Rollout engines: the policy actor plus replicas-1 generation-only actors, each prompt batch split "
        "between them and new weights sent to all after each step. With a sharded learner on GPUs the "
        "replicas share the learner ranks' GPUs (half a GPU each, vLLM sleeping during the step).",
        ge=1,
    )
    gpu_memory_utilization: float = _field(
        0.5, "Share of each GPU vLLM may take (weights + KV cache); the rest is the learner's.", gt=0, le=1
    )
    policy_gpu_memory_utilization: float = _field(
        0.0,
        "The policy actor's own vLLM engine's share of its GPU; 0: engine.gpu_memory_utilization. Not in the "
        "paper: with a sharded learner the policy's engine has its GPU to itself (the ranks train on the "
        "others), so it can take more than the replicas that share a rank's GPU.",
        ge=0,
        le=1,
    )
    attention: Literal["auto", "sdpa", "flex_attention", "flash_attention_2"] = _field(
        "auto",
        "The learner's attention kernel. 'auto': flash-attn when installed on a GPU, else SDPA (never required). "
        "Without flash-attn, SDPA runs packed and shared-prefix rows with a dense mask (every tile computed); "
        "'flex_attention' computes only the tiles their block mask allows (compiled on first use; GPU only, a CPU "
        "copy keeps SDPA: torch's flex has no CPU backward). Not in the "
        "paper; bench/gpu_check.sh times the three at the presets' head shapes to pick the default.",
    )
    vllm_seeding: Literal["request", "engine"] = _field(
        "request",
        "Not in the paper. 'request': every prompt gets its own seed (run seed, stage, prompt index), so outputs "
        "reproduce whatever the batching, but on CUDA vLLM then takes its per-request sampler (a full-vocabulary "
        "sort for top-p, a per-request loop). 'engine': each engine is seeded once (run.seed plus a per-replica "
        "offset) and samples batched: faster, but outputs reproduce only for the same batches, replica count "
        "and vLLM version. bench/vllm_seeds.py measures the cost on a GPU.",
    )
    mask_gpus: bool = _field(
        True,
        "Let Ray give each actor one visible GPU (CUDA_VISIBLE_DEVICES; device 0 inside). Not in the paper: on "
        "NVSwitch H100/H200 machines that masking has known NCCL problems (NVLS ordering, P2P hangs above about "
        "32 MB; NVIDIA NeMo-RL PR 2252); false leaves every GPU visible and each actor selects the GPU Ray "
        "assigned it with set_device.",
    )
    nccl_nvls: bool = _field(
        True,
        "false sets NCCL_NVLS_ENABLE=0 in every actor: the other mitigation for the NVSwitch problems of "
        "engine.mask_gpus (NVLink SHARP off; all-reduce bandwidth on NVSwitch drops a little).",
    )
    sleep_between_phases: bool = _field(
        True,
        "vLLM sleep mode: free the KV cache (and weights, reloaded anyway) during each GRPO step so that "
        "generation and training share the GPU memory.",
    )

    @model_validator(mode="after")
    def _check_scale(self) -> EngineConfig:
        if self.scripted_roles and self.backend == "scripted":
            raise ValueError("scripted_roles with backend: scripted: every role is played by rule already")
        if 0 < self.gpus_per_rank < 1:
            raise ValueError(
                "gpus_per_rank must be 0 (CPU ranks) or a whole number of GPUs: Ray could place two fractional "
                "ranks on one GPU"
            )
        for key in ("prefill_dtype", "decode_dtype"):
            if getattr(self, key) not in ("model", "auto") and self.backend == "vllm":
                raise ValueError(
                    f"engine.{key} applies to the transformers backend; vLLM generates in model.dtype: set "
                    f"model.dtype=bfloat16 or engine.{key}=model"
                )
        if self.tensor_parallel > 1 and self.backend != "vllm":
            raise ValueError("tensor_parallel > 1 needs backend: vllm")
        replicas_in_bundles = self.learner_ranks > 1 and self.rollout_replicas > 1 and self.backend == "vllm"
        if replicas_in_bundles and self.gpus_per_rank >= 1 and not self.sleep_between_phases:
            raise ValueError(
                "sleep_between_phases: false with rollout replicas on the learner ranks' GPUs: a replica must sleep "
                "during the step to share its rank's GPU; set engine.sleep_between_phases=true or rollout_replicas=1"
            )
        if replicas_in_bundles and self.tensor_parallel > 1:
            raise ValueError(
                "tensor_parallel > 1 with rollout replicas on the learner ranks' GPUs: vLLM would start its Ray "
                "executor inside a placement group whose GPUs are given to the ranks (it hangs); set "
                "engine.tensor_parallel=1 or engine.rollout_replicas=1"
            )
        if replicas_in_bundles and self.gpus_per_rank == 0:
            raise ValueError(
                "gpus_per_rank: 0 with vLLM rollout replicas: the replicas live in the learner ranks' CPU bundles and "
                "vLLM needs a GPU there; set engine.gpus_per_rank=1 or engine.rollout_replicas=1"
            )
        if self.sequence_parallel > 1:
            if self.learner_ranks % self.sequence_parallel:
                raise ValueError(
                    f"sequence_parallel={self.sequence_parallel} must divide learner_ranks={self.learner_ranks}"
                )
            if self.packing:
                raise ValueError("packing and sequence_parallel > 1 exclude each other: pick one")
        return self
