"""Measured host memory of one learner step, for tests/test_memory_plan.py (run in a fresh process).

    MALLOC_MMAP_THRESHOLD_=65536 python tests/memory_probe.py MODEL:PROMPT:RESPONSE:SEQUENCES[:flags] ...

flags: `checkpointing`, `chunkN` (engine.logprob_chunk_tokens=N).

One process for every probe (torch is imported once). Prints a JSON line per probe: the step's peak
resident memory above the loaded model (sampled every millisecond; with the
mmap threshold above, every tensor is its own mapping and is returned on free, so resident memory is live
memory), next to the plan's arithmetic for the same shapes.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def probe(path: str, prompt: int, resp: int, n: int, ckpt: bool, chunk: int = 0) -> dict[str, float]:
    """One learner step on a freshly loaded model; memory measured from just before the step."""
    import gc

    import torch

    from spell.engine.learner.core import Learner, LearnerSettings, TrainSequence
    from spell.engine.models.loading import enable_activation_checkpointing, load_causal_lm
    from spell.memory_plan import activation_bytes, logits_bytes, model_shape

    model = load_causal_lm(path, torch.float32, torch.device("cpu"), False)
    if ckpt:
        enable_activation_checkpointing(model)
        model.config.use_cache = False
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    seqs = [
        TrainSequence(
            torch.randint(3, vocab, (prompt,), generator=g).tolist(),
            torch.randint(3, vocab, (resp,), generator=g).tolist(),
            1.0 if i % 2 else -1.0,
        )
        for i in range(n)
    ]
    tokens = n * (prompt + resp)
    learner = Learner(
        model, LearnerSettings(lr=1e-6, token_budget=tokens, shared_prefix=False, logprob_chunk=chunk), pad_id=0
    )  # padded rows
    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    learner.train_step(seqs)
    done.set()
    watcher.join()
    shape = model_shape(path)
    out = {
        "params": sum(p.numel() for p in model.parameters()),
        "planned_params": shape.params,
        "step_peak": peak[0] - base,
        "planned_step_peak": shape.params * 8 + shape.params * 4
        + activation_bytes(shape, tokens, ckpt, 4) + logits_bytes(shape, n * resp, 4, chunk),
    }  # fmt: skip
    del learner, model
    gc.collect()  # the next probe's baseline starts without this one's memory
    return out


def main() -> None:
    import torch

    torch.set_num_threads(2)
    for spec in sys.argv[1:]:
        path, prompt, resp, n, *flags = spec.split(":")
        chunk = next((int(f[5:]) for f in flags if f.startswith("chunk")), 0)
        print(json.dumps(probe(path, int(prompt), int(resp), int(n), "checkpointing" in flags, chunk)))


if __name__ == "__main__":
    main()
