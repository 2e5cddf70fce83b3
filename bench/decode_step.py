"""Where a greedy decode step of the default model goes, and what cuts it: the model's forward step (12 rows
over ~640-token prompts), its profile, every Linear at M=12 in fp32 and in bf16 (a different weight each call,
as in the model) through MKL and through oneDNN's packed kernel, the step with bf16 Linears
(engine.decode_dtype=bfloat16's arithmetic), with q/k/v and gate/up fused into one matmul each, and the
written-out step (engine.decode_step=direct, spell/engine/rollout/llama_decode.py) with its profile.

    python bench/decode_step.py            # SmolLM2-135M (~3 min on 2 cores)
    python bench/decode_step.py --toy      # a random 2.6M Qwen2, seconds
    python bench/decode_step.py --compile  # also torch.compile(dynamic=True) of the step (slow to compile)
"""

import copy
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from _common import bench_model, weight_pass_seconds, word_prompts
from transformers import AutoModelForCausalLM, AutoTokenizer

from spell.engine.padding import left_padded
from spell.engine.rollout.kv_cache import preallocated_cache
from spell.engine.rollout.linear_copy import LinearCopy
from spell.engine.rollout.llama_decode import DecodeWeights, SharedPromptDecoder, packed_kernel_works

toy = "--toy" in sys.argv
path = bench_model(toy)
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
ROWS, LEN, K = 12, 640, 12
prompts = word_prompts(tok, ROWS, LEN, seed=5)
ids, attn, pos = left_padded(prompts)
kw = "cache" if "cache" in __import__("inspect").signature(model.forward).parameters else "past_key_values"
torch.set_grad_enabled(False)
cache = preallocated_cache(model.config, 64)
t = time.perf_counter()
out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1, **{kw: cache})
print(f"prefill {time.perf_counter() - t:.1f} s", flush=True)
nxt0, last0 = out.logits[:, -1].argmax(-1), pos[:, -1]


def steps(net, k=K):
    c = copy.deepcopy(cache)
    a, at, x = attn.clone(), last0.clone(), nxt0.clone()
    toks, times = [], []
    for _ in range(k):
        t0 = time.perf_counter()
        a = torch.cat([a, a.new_ones((ROWS, 1))], 1)
        at = at + 1
        o = net(input_ids=x[:, None], attention_mask=a, position_ids=at[:, None], use_cache=True, **{kw: c})
        x = o.logits[:, -1].argmax(-1)
        toks.append(x)
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return times[len(times) // 2], torch.stack(toks, 1)


def report(name, net, ref=None):
    s, toks = steps(net)
    same = "" if ref is None else f", greedy tokens same as base: {bool((toks == ref).all())}"
    print(f"{name}: {1000 * s:.1f} ms/step{same}", flush=True)
    return s, toks


base_s, base_toks = report("base fp32", model)
print(f"weight pass {1000 * weight_pass_seconds(model):.1f} ms", flush=True)

# profile of the base step
from torch.profiler import ProfilerActivity, profile  # noqa: E402

with profile(activities=[ProfilerActivity.CPU]) as prof:
    steps(model, 6)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))

# isolated matmuls at M=ROWS, fp32 vs bf16, weights streamed (a different weight each call, as in the model)
shapes = [(m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
ws32 = [torch.randn(o, i) for i, o in shapes]
ws16 = [w.bfloat16() for w in ws32]
xs = {i: torch.randn(ROWS, i) for i, _ in shapes}
for name, ws, cast in (("fp32", ws32, False), ("bf16", ws16, True)):
    for _ in range(2):
        t0 = time.perf_counter()
        for w in ws:
            x = xs[w.shape[1]]
            y = F.linear(x.bfloat16() if cast else x, w)
            if cast:
                y = y.float()
        dt = time.perf_counter() - t0
    fl = sum(2 * ROWS * w.numel() for w in ws)
    print(f"all linears at M={ROWS}, {name}: {1000 * dt:.1f} ms ({fl / dt / 1e9:.0f} GFLOP/s)", flush=True)
    if packed_kernel_works(ws[0].dtype):  # the same matmuls through oneDNN, weights packed for it
        packed = [torch.ops.mkldnn._reorder_linear_weight(w) for w in ws]
        for _ in range(2):
            t0 = time.perf_counter()
            for w, p in zip(ws, packed, strict=True):
                x = xs[w.shape[1]]
                y = torch.ops.mkldnn._linear_pointwise(x.bfloat16() if cast else x, p, None, "none", [], "")
            dt = time.perf_counter() - t0
        print(f"all linears at M={ROWS}, {name}, oneDNN packed: {1000 * dt:.1f} ms ({fl / dt / 1e9:.0f} GFLOP/s)")


m16 = LinearCopy(model, torch.bfloat16).fresh()  # engine.decode_dtype=bfloat16's decode module
report("bf16 linears, fp32 rest", m16, base_toks)
del m16


class Fused(torch.nn.Module):
    """First of a group computes all members' outputs at once; the others read their slice."""

    def __init__(self, lins, box, idx):
        super().__init__()
        self.box, self.idx = box, idx
        if idx == 0:
            self.w = torch.cat([lin.weight.detach() for lin in lins], 0).contiguous()
        sizes = [lin.out_features for lin in lins]
        self.lo, self.hi = sum(sizes[:idx]), sum(sizes[: idx + 1])

    def forward(self, x):
        if self.idx == 0:
            self.box["y"] = F.linear(x, self.w)
        return self.box["y"][..., self.lo : self.hi]


mf = copy.deepcopy(model)
for layer in mf.model.layers:
    for parent, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj")), (layer.mlp, ("gate_proj", "up_proj"))):
        lins, box = [getattr(parent, n) for n in names], {}
        for j, n in enumerate(names):
            setattr(parent, n, Fused(lins, box, j))
report("fused qkv + gate/up fp32", mf, base_toks)
del mf


def direct_steps(linear_dtype=None, k=K):
    """The written-out step over the same prefill cache (one copy a prompt), fed its own greedy tokens."""
    w = DecodeWeights(model, linear_dtype).refresh()
    c = copy.deepcopy(cache)
    state = SharedPromptDecoder(w, [(layer.keys, layer.values) for layer in c.layers], attn, 1, k + 1)
    at, x = last0.clone(), nxt0.clone()
    toks, times = [], []
    for _ in range(k):
        t0 = time.perf_counter()
        at = at + 1
        x = state.step(x, at).argmax(-1)
        toks.append(x)
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return times[len(times) // 2], torch.stack(toks, 1)


for name, dt in (
    ("written-out step fp32 (engine.decode_step=direct)", None),
    ("written-out step, bf16 linears", torch.bfloat16),
):
    s_direct, toks = direct_steps(dt)
    print(
        f"{name}: {1000 * s_direct:.1f} ms/step = {base_s / s_direct:.2f}x base; greedy tokens same as base: "
        f"{bool((toks == base_toks).all())}",
        flush=True,
    )
with profile(activities=[ProfilerActivity.CPU]) as prof:
    direct_steps(None, 6)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))

if "--compile" in sys.argv:
    mc = copy.deepcopy(model)
    mc.forward = torch.compile(mc.forward, dynamic=True)
    t0 = time.perf_counter()
    try:
        steps(mc, 3)
        print(f"compile + 3 steps: {time.perf_counter() - t0:.0f} s", flush=True)
        report("torch.compile(dynamic) fp32", mc, base_toks)
    except Exception as e:
        print(f"compile failed: {type(e).__name__}: {str(e)[:300]}")
print(f"threads {torch.get_num_threads()}, {os.cpu_count()} cpus")
