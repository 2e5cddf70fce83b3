"""The device check's checks (bench/gpu_check.py runs them), in order of what they decide. Each returns
table rows; `small` runs it at toy shapes (the CPU dry run in the suite)."""

from __future__ import annotations

import multiprocessing as mp
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence

Row = tuple[str, str]
GIB = float(1 << 30)
# hidden, layers, heads, kv heads, head_dim, intermediate, vocab
QWEN3_4B = (2560, 36, 32, 8, 128, 9728, 151936)
WIDTH_7B = (3584, 28, 28, 4, 128, 18944, 152064)
TOY = (128, 2, 2, 1, 64, 256, 512)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], dev: torch.device, repeat: int = 1) -> float:
    fn()  # warm-up (kernels, autotuning, compilation)
    sync(dev)
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(dev)
    return (time.perf_counter() - t) / repeat


def random_model(shape: tuple[int, ...], layers: int | None, dev: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A randomly initialised Qwen-style model of `shape`, built on its device (a 4B model in seconds)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    h, n, heads, kv, hd, inter, vocab = shape
    cfg = Qwen2Config(hidden_size=h, num_hidden_layers=layers or n, num_attention_heads=heads, head_dim=hd,
                      num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab,
                      max_position_embeddings=32768, tie_word_embeddings=False)  # fmt: skip
    with torch.device(dev):
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")


def batch(vocab: int, groups: int, group: int, prompt: int, answer: int, seed: int = 0) -> list[TrainSequence]:
    rng = random.Random(seed)
    out = []
    for _ in range(groups):
        p = [rng.randrange(3, vocab) for _ in range(prompt)]
        out += [TrainSequence(p, [rng.randrange(3, vocab) for _ in range(answer)], rng.uniform(-1, 1))
                for _ in range(group)]  # fmt: skip
    return out


def check_env(dev: torch.device, small: bool) -> list[Row]:
    import platform

    import transformers

    rows = [("versions", f"python {platform.python_version()}, torch {torch.__version__}, "
                         f"transformers {transformers.__version__}, CUDA {torch.version.cuda}")]  # fmt: skip
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(0)
        rows.append(("device", f"{p.name}, {p.total_memory / GIB:.1f} GiB, sm {p.major}{p.minor}, "
                               f"{torch.cuda.device_count()} visible"))  # fmt: skip
        b = torch.backends.cuda
        rows.append(("SDPA backends", f"flash {b.flash_sdp_enabled()}, mem-efficient {b.mem_efficient_sdp_enabled()}, "
                                      f"cudnn {b.cudnn_sdp_enabled()}, math {b.math_sdp_enabled()}"))  # fmt: skip
    for mod in ("flash_attn", "peft", "vllm", "ray"):
        try:
            rows.append((mod, str(__import__(mod).__version__)))
        except Exception as exc:
            rows.append((mod, f"absent ({type(exc).__name__})"))
    return rows


def check_lora_preset(dev: torch.device, small: bool) -> list[Row]:
    """configs/qwen3-4b-1gpu-lora.yaml's learner at its own shape, beside vLLM's sleeping reservation, against
    `spell plan`'s training phase for that preset."""
    from spell.config import load_config
    from spell.memory_plan import VLLM_ASLEEP_GIB, model_shape, plan_memory

    cfg = load_config("configs/qwen3-4b-1gpu-lora.yaml")
    held = torch.empty(int(VLLM_ASLEEP_GIB * GIB) if dev.type == "cuda" else 0, dtype=torch.uint8, device=dev)
    model = random_model(TOY if small else QWEN3_4B, None, dev, torch.bfloat16)
    try:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.model.lora_rank, lora_alpha=cfg.model.lora_alpha,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))  # fmt: skip
        how = f"LoRA r{cfg.model.lora_rank}"
    except ImportError:
        how = "peft absent: full bf16 weights trained"
    vocab = model.config.vocab_size
    answer = 64 if small else cfg.rollout.max_new_tokens
    prompt = 64 if small else cfg.engine.train_token_budget - answer
    seqs = batch(vocab, 1, 1, prompt, answer)
    learner = Learner(model, LearnerSettings(lr=1e-5, token_budget=prompt + answer), autocast=None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = timed(lambda: learner.train_step(seqs), dev)
    peak = torch.cuda.max_memory_reserved() / GIB if dev.type == "cuda" else 0.0
    plan = plan_memory(cfg, model_shape(cfg.model.path), 1, 80.0)
    planned = plan.budgets[0].peak()[1]
    del held
    return [(f"Qwen3-4B LoRA preset learner step ({how}, {prompt}+{answer} tokens, vLLM asleep held)",
             f"{t:.1f} s, peak reserved {peak:.1f} GiB; spell plan's training phase {planned:.1f} GiB")]  # fmt: skip


def _peak_step(model: torch.nn.Module, seqs: list[TrainSequence], dev: torch.device) -> float:
    learner = Learner(model, LearnerSettings(lr=1e-6, token_budget=10**6, shared_prefix=False),
                      autocast=torch.bfloat16 if dev.type == "cuda" else None)  # fmt: skip
    learner.train_step(seqs)  # AdamW state allocated
    if dev.type != "cuda":
        return 0.0
    sync(dev)
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    learner.train_step(seqs)
    return (torch.cuda.max_memory_allocated() - base) / GIB


def check_calibration(dev: torch.device, small: bool) -> list[Row]:
    """7B width, real vocabulary, 2 and 4 layers: the step's peak above its resident state, split into a
    per-layer part (activations) and the rest (logits), against spell plan's figures for the same tokens."""
    from spell.memory_plan import ModelShape, activation_bytes, logits_bytes

    shape = TOY if small else WIDTH_7B
    prompt, answer, group = (32, 16, 2) if small else (1024, 256, 4)
    peaks = {}
    for layers in (2, 4):
        model = random_model(shape, layers, dev, torch.float32)
        peaks[layers] = _peak_step(model, batch(shape[-1], 1, group, prompt, answer), dev)
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    h, _, heads, kv, hd, inter, vocab = shape
    ms = ModelShape(h, 1, heads, kv, hd, inter, vocab, False, True, 32768)
    tokens, kept = group * (prompt + answer), group * (answer + 1)
    per_layer_plan = activation_bytes(ms, tokens, False, 2) / GIB
    logits_plan = logits_bytes(ms, kept, 2) / GIB
    per_layer = (peaks[4] - peaks[2]) / 2
    rest = peaks[2] - 2 * per_layer
    return [(f"7B-width step peak above resident ({tokens} tokens, {kept} kept logits)",
             f"per layer {per_layer:.3f} GiB (plan {per_layer_plan:.3f}), rest {rest:.2f} GiB "
             f"(plan's logits {logits_plan:.2f}; gradients of the step included)")]  # fmt: skip


def _attention_cases(q, k, v, mask, block_mask) -> dict[str, Callable[[], None]]:
    import torch.nn.functional as F

    def causal() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).sum().backward()

    def dense() -> None:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).sum().backward()

    cases = {"causal": causal, "dense mask": dense}
    if block_mask is not None:
        from torch.nn.attention.flex_attention import flex_attention

        compiled = torch.compile(flex_attention)

        def flex() -> None:
            compiled(q, k, v, block_mask=block_mask, enable_gqa=True).sum().backward()

        cases["flex"] = flex
    return cases


def check_attention(dev: torch.device, small: bool) -> list[Row]:
    """Forward + backward of one attention call at the presets' head shapes: causal SDPA, SDPA with a
    shared-prefix row's boolean mask (spell's, 8 answers), and flex_attention's block mask (GPU only:
    torch's flex has no CPU backward)."""
    from spell.engine.learner.shared_prefix import device_mask, flex_block_mask

    rows = []
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    for name, heads, kv in (("qwen2.5-7b", 28, 4), ("qwen3-4b", 32, 8)):
        heads, kv, hd, total = (4, 2, 64, 256) if small else (heads, kv, 128, 8192)
        answers = 8
        prompt, ans = total // 2, total // 2 // answers
        block = torch.zeros(total, dtype=torch.long)
        answer = torch.cat([torch.full((prompt,), -1), torch.arange(answers).repeat_interleave(ans)])
        q, k, v = (torch.randn(1, n, total, hd, device=dev, dtype=dtype, requires_grad=True) for n in (heads, kv, kv))
        mask = device_mask(block, answer, "sdpa", dev, dtype)
        block_mask = flex_block_mask(block, answer, dev) if dev.type == "cuda" else None
        times = {}
        for case, fn in _attention_cases(q, k, v, mask, block_mask).items():
            try:
                times[case] = f"{timed(fn, dev, 3) * 1e3:.1f} ms"
            except Exception as exc:
                times[case] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
        shown = ", ".join(f"{c} {t}" for c, t in times.items())
        rows.append((f"attention fwd+bwd, {name} heads {heads}/{kv}, T={total}", shown))
    return rows


def _hold(keep: bool, conn, small: bool) -> None:  # pragma: no cover - a child process
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from spell.engine.learner.fsdp import release_step_memory

    dev = torch.device("cuda")
    model = random_model(TOY if small else (896, 24, 14, 2, 64, 4864, 151936), None, dev, torch.float32)
    Learner(model, LearnerSettings(lr=1e-6), autocast=torch.bfloat16).train_step(
        batch(model.config.vocab_size, 2, 4, 1024, 256)
    )
    if not keep:
        release_step_memory()
    conn.send(torch.cuda.memory_reserved() / GIB)
    conn.recv()  # hold until the parent has measured


def check_reserve(dev: torch.device, small: bool) -> list[Row]:
    """Issue 27 item 1 shown directly: what another process (a colocated vLLM replica) can allocate while a
    learner process holds its step's cache, without and with `release_step_memory`."""
    if dev.type != "cuda":
        return [("cross-process reserve", "CUDA only")]
    out = []
    ctx = mp.get_context("spawn")
    for keep in (True, False):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_hold, args=(keep, child, small))
        proc.start()
        reserved = parent.recv()
        free, total = torch.cuda.mem_get_info()
        parent.send(1)
        proc.join(60)
        out.append(f"{'kept' if keep else 'released'}: learner reserves {reserved:.1f} GiB, {free / GIB:.1f} of "
                   f"{total / GIB:.0f} GiB free to others")  # fmt: skip
    return [("learner cache vs another process", "; ".join(out))]


def check_sync_rates(dev: torch.device, small: bool) -> list[Row]:
    """Host<->device copy rates, pageable against pinned, and the weight-sync sender's pack-and-cast rate."""
    from spell.engine.sync.broadcast import SyncGroup, plan_buckets, send_weights

    n = (1 << 20) if small else (1 << 28)  # 1 GiB of fp32 on a GPU
    rows = []
    if dev.type == "cuda":
        for pinned in (False, True):
            host = torch.empty(n, dtype=torch.float32, pin_memory=pinned)
            gpu = torch.empty(n, dtype=torch.float32, device=dev)
            up = timed(lambda h=host, g=gpu: g.copy_(h, non_blocking=True), dev, 3)
            down = timed(lambda h=host, g=gpu: h.copy_(g, non_blocking=True), dev, 3)
            rows.append((f"host copies, {'pinned' if pinned else 'pageable'}",
                         f"to GPU {n * 4 / up / 1e9:.1f} GB/s, to host {n * 4 / down / 1e9:.1f} GB/s"))  # fmt: skip
    backend = "nccl" if dev.type == "cuda" else "gloo"
    group = SyncGroup.host("127.0.0.1", 1, backend, timeout_s=60).connect()
    tensors = {f"w{i}": torch.randn(n // 8, device=dev) for i in range(8)}
    plan = plan_buckets(tensors, 2, 1 << 28)
    t = timed(lambda: send_weights(group, tensors, plan, torch.bfloat16), dev)
    rows.append(
        ("weight-sync sender, a world of one (pack, cast to bf16, broadcast)", f"{n * 2 / t / 1e9:.1f} GB/s of bf16")
    )
    group.abort()
    return rows


def check_fsdp_offload(dev: torch.device, small: bool) -> list[Row]:
    """The sharded learner at world size 1 with CPU offload: a step, DCP save and load."""
    from spell.engine.learner.fsdp import ShardedLearnerWorker, free_port
    from spell.engine.models.tiny import build_tiny_model

    path = Path(tempfile.mkdtemp(prefix="spell-gpu-check-")) / "model"
    build_tiny_model(path, hidden_size=128 if small else 896, layers=2 if small else 8, heads=2 if small else 14,
                     kv_heads=1 if small else 2, intermediate_size=256 if small else 4864)  # fmt: skip
    sharding = {"world_size": 1, "mixed_precision": "bf16" if dev.type == "cuda" else "fp32",
                "cpu_offload": dev.type == "cuda"}  # fmt: skip
    w = ShardedLearnerWorker(str(path), {"lr": 1e-4, "token_budget": 4096}, sharding, rank=0)
    info = w.setup("127.0.0.1", free_port())
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(path).vocab_size
    seqs = [{"prompt_ids": s.prompt_ids, "response_ids": s.response_ids, "advantage": s.advantage}
            for s in batch(vocab, 2, 2, 64, 16)]  # fmt: skip
    t = time.perf_counter()
    m = w.train_step(seqs, float(sum(len(s["response_ids"]) for s in seqs)), 1)
    step = time.perf_counter() - t
    out = Path(tempfile.mkdtemp(prefix="spell-gpu-check-ckpt-"))
    w.save(str(out))
    w.load(str(out))
    w.close()
    memory = f"reserve {m['rank_reserved_gib']:.2f} GiB after release (peak {m['rank_peak_gib']:.2f})"
    result = f"backend {info['backend']}, step {step:.2f} s, loss {m['loss']:.4f}, {memory}, DCP save+load ok"
    return [(f"FSDP2 world size 1, cpu_offload {sharding['cpu_offload']}", result)]


CHECKS = {  # in order of what they decide; bench/gpu_check.sh gives each its own process and time cap
    "env": check_env,
    "lora_preset": check_lora_preset,
    "calibration": check_calibration,
    "attention": check_attention,
    "reserve": check_reserve,
    "sync_rates": check_sync_rates,
    "fsdp_offload": check_fsdp_offload,
}
