"""The GPU paths on a bare CUDA machine (torch + transformers only; Ray, vLLM, flash-attn may be absent):
one table, about 5 minutes on one GPU.

    bash bench/gpu_check.sh                      # on the GPU machine, writes gpu_check.md
    python bench/gpu_check.py --device cpu --small   # the same checks in small shapes on a CPU (a dry run)

Rows: a bf16 learner step over fp32 master weights moves as many elements as fp32 (lr 2e-6, N steps);
packed, shared-prefix and padded layouts agree on log-probs (max |diff|) and their train tokens/s (SDPA,
and flex_attention where it loads); the cost of the dense packed mask at T=32K against flex's block mask;
the sharded learner at world size 1 over NCCL (step, full state dict, DCP save and load, export); the
caching allocator's reserve after a step before and after `torch.cuda.empty_cache()`; learner MFU of a
1.5B-shaped random model, embeddings and lm_head excluded from the FLOPs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale
from _common import machine

from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
from spell.engine.models.tiny import build_tiny_model

# hidden, layers, heads, kv heads, intermediate; head_dim >= 64 (Hopper kernels refuse head_dim 16)
SHAPES = {"small": (128, 2, 2, 1, 256), **scale.SHAPES}
Row = tuple[str, str]


def model_at(shape: str, attn: str, dev: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    h, layers, heads, kv, inter = SHAPES[shape]
    path = Path(tempfile.gettempdir()) / f"spell-gpu-check-{shape}"
    if not (path / "config.json").is_file():
        build_tiny_model(path, hidden_size=h, layers=layers, heads=heads, kv_heads=kv, intermediate_size=inter,
                         max_positions=32768, vocab_size=32000 if shape != "small" else None)  # fmt: skip
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn).to(dev)


def batch(vocab: int, groups: int, group: int, prompt: int, answer: int, seed: int = 0) -> list[TrainSequence]:
    rng = random.Random(seed)
    out = []
    for _ in range(groups):
        p = [rng.randrange(3, vocab) for _ in range(prompt)]
        out += [TrainSequence(p, [rng.randrange(3, vocab) for _ in range(answer)], rng.uniform(-1, 1))
                for _ in range(group)]  # fmt: skip
    return out


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], dev: torch.device) -> float:
    fn()  # warm-up (kernels, autotuning)
    sync(dev)
    t = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t


def check_precision(dev: torch.device, steps: int) -> list[Row]:
    shares = {}
    for name, autocast in (("fp32", None), ("bf16 over fp32 master", torch.bfloat16)):
        torch.manual_seed(0)
        model = model_at("small", "sdpa", dev)
        start = [p.detach().clone() for p in model.parameters()]
        learner = Learner(model, LearnerSettings(lr=2e-6), autocast=autocast)
        seqs = batch(model.config.vocab_size, 2, 2, 24, 8)
        for _ in range(steps):
            learner.train_step(seqs)
        moved = sum(int((p.detach() != s).sum()) for p, s in zip(model.parameters(), start, strict=True))
        shares[name] = moved / sum(s.numel() for s in start)
    ratio = shares["bf16 over fp32 master"] / max(shares["fp32"], 1e-12)
    return [(f"weights moved after {steps} steps at lr 2e-6", ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
             + f" (ratio {ratio:.3f}, 1.0 = nothing lost)")]  # fmt: skip


def check_layouts(dev: torch.device, shape: str, prompt: int) -> list[Row]:
    rows: list[Row] = []
    impls = ["sdpa"] + (["flex_attention"] if dev.type == "cuda" else [])
    for attn in impls:
        try:
            model = model_at(shape, attn, dev)
        except Exception as exc:  # an attention kernel this build lacks is a finding, not a crash
            rows.append((f"layouts, {attn}", f"not available: {type(exc).__name__}: {str(exc)[:120]}"))
            continue
        seqs = batch(model.config.vocab_size, 4, 4, prompt, 64)
        tokens = sum(len(s.prompt_ids) + len(s.response_ids) for s in seqs)
        lps, rates = {}, {}
        layouts = (("padded", {"shared_prefix": False}), ("packed", {"packing": True, "shared_prefix": False}),
                   ("shared", {"shared_prefix": True}))  # fmt: skip
        for name, kw in layouts:
            learner = Learner(model, LearnerSettings(lr=0.0, token_budget=4 * prompt + 1024, **kw),
                              autocast=torch.bfloat16 if dev.type == "cuda" else None)  # fmt: skip
            with torch.no_grad():
                lps[name] = torch.tensor([x for row in learner.logprobs(seqs) for x in row])
            rates[name] = tokens / timed(lambda lr=learner, b=seqs: lr.train_step(b), dev)
        diff = {k: float((v - lps["padded"]).abs().max()) for k, v in lps.items() if k != "padded"}
        rows.append((f"log-prob max abs diff vs padded, {attn}", ", ".join(f"{k} {v:.2e}" for k, v in diff.items())))
        rows.append((f"train sequence tok/s, {attn}", ", ".join(f"{k} {v:,.0f}" for k, v in rates.items())))
        del model
    return rows


def check_mask(dev: torch.device, total: int) -> list[Row]:
    from spell.engine.learner.packing import block_causal_mask

    lengths = [total // 16] * 16
    before = torch.cuda.memory_allocated() if dev.type == "cuda" else 0
    t = timed(lambda: block_causal_mask(lengths).to(dev), dev)
    mask = block_causal_mask(lengths).to(dev)
    dense = mask.numel() * mask.element_size()
    del mask
    rows = [(f"dense float mask on CPU + copy (before), T={total}", f"{t * 1e3:.0f} ms, {dense / 2**30:.2f} GiB")]
    from spell.engine.learner.packing import block_ids
    from spell.engine.learner.shared_prefix import device_mask

    seg, none = block_ids(lengths), torch.full((total,), -1)
    tb = timed(lambda: device_mask(seg, none, "sdpa", dev, torch.bfloat16), dev)
    size = f"{total**2 / 2**30:.2f} GiB"
    rows.append((f"boolean mask on the device (now, SDPA), T={total}", f"{tb * 1e3:.0f} ms, {size}"))
    try:
        from spell.engine.learner.shared_prefix import flex_block_mask

        block = torch.repeat_interleave(torch.arange(16), torch.tensor(lengths))
        answer = torch.zeros(total, dtype=torch.long)
        tf = timed(lambda: flex_block_mask(block, answer, dev), dev)
        rows.append((f"flex block mask, T={total}", f"{tf * 1e3:.0f} ms to build"))
    except Exception as exc:
        rows.append((f"flex block mask, T={total}", f"not available: {type(exc).__name__}: {str(exc)[:120]}"))
    if dev.type == "cuda":
        rows.append(("allocated after the mask checks", f"{(torch.cuda.memory_allocated() - before) / 2**20:.0f} MiB"))
    return rows


def check_sharded(dev: torch.device) -> list[Row]:
    from spell.engine.learner.fsdp import ShardedLearnerWorker, export_checkpoint, free_port

    path = Path(tempfile.gettempdir()) / "spell-gpu-check-small"
    vocab = model_at("small", "sdpa", torch.device("cpu")).config.vocab_size  # writes the folder
    sharding = {"world_size": 1, "mixed_precision": "bf16" if dev.type == "cuda" else "fp32"}
    w = ShardedLearnerWorker(str(path), {"lr": 1e-4, "token_budget": 4096}, sharding, rank=0)
    info = w.setup("127.0.0.1", free_port())
    seqs = [{"prompt_ids": s.prompt_ids, "response_ids": s.response_ids, "advantage": s.advantage}
            for s in batch(vocab, 2, 2, 24, 8)]  # fmt: skip
    t = time.perf_counter()
    m = w.train_step(seqs, float(sum(len(s["response_ids"]) for s in seqs)), 1)
    step = time.perf_counter() - t
    sd = w.full_state_dict() or {}
    out = Path(tempfile.mkdtemp(prefix="spell-gpu-check-ckpt-"))
    w.save(str(out))
    w.load(str(out))
    exported = export_checkpoint(out, out / "export")
    w.close()
    files = sorted(p.name for p in exported.iterdir())[:3]
    result = (
        f"backend {info['backend']}, step {step:.2f}s, loss {m['loss']:.4f}, full state dict {len(sd)} tensors, "
        f"DCP save+load ok, export {files}"
    )
    return [("sharded learner, world size 1", result)]


def check_cache(dev: torch.device, shape: str) -> list[Row]:
    if dev.type != "cuda":
        return [("reserve after a step", "CUDA only")]
    model = model_at(shape, "sdpa", dev)
    learner = Learner(model, LearnerSettings(lr=1e-6, token_budget=8192), autocast=torch.bfloat16)
    learner.train_step(batch(model.config.vocab_size, 4, 4, 1024, 128))
    reserved = torch.cuda.memory_reserved()
    torch.cuda.empty_cache()
    after, alloc = torch.cuda.memory_reserved(), torch.cuda.memory_allocated()
    result = f"{reserved / 2**30:.2f} GiB -> {after / 2**30:.2f} GiB after empty_cache (allocated {alloc / 2**30:.2f})"
    return [("caching allocator reserve after a step", result)]


def check_mfu(dev: torch.device, shape: str, prompt: int) -> list[Row]:
    model = model_at(shape, "sdpa", dev)
    from spell.engine.models.loading import enable_activation_checkpointing

    enable_activation_checkpointing(model)
    c = model.config
    body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    seqs = batch(c.vocab_size, 4, 4, prompt, 256)
    learner = Learner(model, LearnerSettings(lr=1e-6, token_budget=4 * (prompt + 256)),
                      autocast=torch.bfloat16 if dev.type == "cuda" else None)  # fmt: skip
    tokens = sum(len(s.prompt_ids) + len(s.response_ids) for s in seqs)
    t = timed(lambda: learner.train_step(seqs), dev)
    # 6 FLOPs per parameter per token (fwd + bwd) + attention 12 * layers * hidden * seq per token (causal half)
    flops = tokens * (6 * body + 6 * c.num_hidden_layers * c.hidden_size * (prompt + 256))
    peak = scale.peak_tflops() if dev.type == "cuda" else None
    mfu = f", MFU {100 * flops / t / (peak * 1e12):.1f}% of {peak:.0f} TFLOP/s" if peak else ""
    result = f"{tokens / t:,.0f} tok/s, {flops / t / 1e12:.1f} TFLOP/s{mfu} (gradient checkpointing on)"
    return [(f"learner, {shape} random ({body / 1e9:.2f}B non-embedding)", result)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="small shapes (a CPU dry run of every check)")
    ap.add_argument("--out", default="gpu_check.md")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu_check.py: no CUDA device (use --device cpu --small for a dry run)")
    shape, prompt, steps, total = ("small", 128, 20, 4096) if args.small else ("1.5b", 2048, 80, 32768)
    checks = [
        ("precision", lambda: check_precision(dev, steps)),
        ("layouts", lambda: check_layouts(dev, "small" if args.small else "0.5b", prompt)),
        ("mask", lambda: check_mask(dev, total)),
        ("sharded", lambda: check_sharded(dev)),
        ("cache", lambda: check_cache(dev, "small" if args.small else "0.5b")),
        ("mfu", lambda: check_mfu(dev, shape, prompt)),
    ]
    rows: list[Row] = []
    for name, fn in checks:
        t = time.perf_counter()
        try:
            rows += fn()
        except Exception as exc:  # one failing check must not hide the others' rows
            rows.append((name, f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"))
        print(f"{name}: {time.perf_counter() - t:.0f}s", flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    text = f"machine: {machine()}\n\n| check | result |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
    Path(args.out).write_text(text)
    print(text)
    os._exit(0)  # a process group may still hold threads


if __name__ == "__main__":
    main()
