"""The same flow with a sharded learner: cpu-smoke with FSDP2 over 2 gloo ranks trains, checkpoints
sharded (with a rollout replica), resumes from the shards after the policy actor is lost (with sequence
parallelism on), and `spell export` gives an HF folder."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from spell.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.ray]
CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "cpu-smoke.yaml")
SHARDED = ["engine.learner_ranks=2", "engine.gpus_per_rank=0", "engine.mixed_precision=fp32"]


def test_sharded_learner_runs_the_pipeline_and_exports(prefect_api, ray_local, tmp_path):
    from flows.iteration import spell_iteration
    from spell.engine.ray_policy import kill_policy_actor
    from tasks.actor import HANDLES

    ov = [f"run.runs_dir={tmp_path}", *SHARDED]
    # iteration 1 also generates on a second rollout engine placed in the learner's placement group
    first = spell_iteration(run="fsdp", config=CONFIG, overrides=[*ov, "engine.rollout_replicas=2"])
    assert first["usable_groups"] >= 4
    ckpt1 = tmp_path / "fsdp" / "checkpoints" / "iter_0001"
    assert (ckpt1 / "sharded" / ".metadata").is_file() and (ckpt1 / "model" / "config.json").is_file()
    m = pq.read_table(Path(first["dir"]) / "train_metrics.parquet").to_pylist()[0]
    assert m["skipped"] == 0.0 and m["tokens"] > 0 and m["micro_batches"] >= 1
    assert m["weight_sync_bytes"] > 0  # learner rank 0 broadcast to the policy actor and the replica
    for name in list(HANDLES):  # the policy actor (and the learner group it owns) is lost
        kill_policy_actor(name)
        HANDLES.pop(name)
    # iteration 2 also switches on Ulysses sequence parallelism (both ranks share each sequence)
    second = spell_iteration(run="fsdp", config=CONFIG, overrides=[*ov, "engine.sequence_parallel=2"])
    assert second["iteration"] == 2
    m2 = pq.read_table(Path(second["dir"]) / "train_metrics.parquet").to_pylist()[0]
    assert m2["skipped"] == 0.0 and m2["tokens"] > 0
    ckpt2 = tmp_path / "fsdp" / "checkpoints" / "iter_0002"
    out = tmp_path / "exported"
    assert main(["export", str(ckpt2), "--out", str(out)]) == 0
    exported = load_file(out / "model.safetensors")
    saved = load_file(ckpt2 / "model" / "model.safetensors")
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2


def test_a_cluster_too_small_is_a_clear_error(ray_local):
    from spell.engine.placement import ClusterResourceError
    from spell.engine.policy import PolicySpec
    from spell.engine.ray_policy import policy_actor

    spec = PolicySpec(model_path="tiny:qwen2", learner_ranks=64, gpus_per_rank=0, cpus_per_rank=1)
    with pytest.raises(ClusterResourceError, match=r"64 CPU \(the cluster has .* free\)"):
        policy_actor("too-big", spec)
