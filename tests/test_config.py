"""Config tree: defaults of spec Part A, rejection of bad keys/values, YAML round trip."""

import re
from pathlib import Path

import pytest

from spell.config import ConfigError, SpellConfig, config_from_dict, describe_config, dump_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_part_a_defaults():
    """Every default of Part A's table, row by row, lives in the config tree."""
    c = SpellConfig()
    assert c.data.docs_per_visit == 5 and c.history.size == 3
    assert c.history.admit == "paper" and c.history.context == "paper" and c.history.dedup
    assert c.grounding.enabled and c.grounding.samples == 1
    assert c.responder.group_size == 8 and c.verifier.votes == 8
    assert c.reward.combine == "max"
    assert c.questioner.reward == "gaussian" and c.questioner.sigma == pytest.approx(1 / 6)
    assert c.questioner.bad_format_reward == -1.0 and c.questioner.ungrounded_reward == -0.5
    assert c.questioner.normalize == "task" and c.questioner.negatives_ratio == 1.0
    assert (c.verifier.agreement_low, c.verifier.agreement_high, c.verifier.label) == (0.51, 0.99, "maj_cons")
    assert c.sampling.dynamic and c.sampling.max_rounds == 10 and c.sampling.train_batch_size == 128
    assert c.optim.lr == 2e-6 and c.optim.weight_decay == 0.01 and c.optim.grad_clip == 1.0
    assert (c.optim.clip_low, c.optim.clip_high, c.optim.kl_coef) == (0.2, 0.2, 0.0)
    assert c.optim.betas == (0.9, 0.999)
    assert (c.rollout.temperature, c.rollout.top_p) == (0.7, 0.95)
    assert set(c.data.task_weights) == {"doc_general_qa", "doc_mc", "docmath_qa"}


def test_verifier_groups_per_step_matches_paper():
    """Part A 'verifier samples per step': 128 * 8 * 0.125 / 8 = 16 groups."""
    assert SpellConfig().verifier_groups_per_step == 16


def test_every_field_has_help_text():
    text = describe_config()
    for sec in SpellConfig.model_fields.values():
        for name, f in sec.annotation.model_fields.items():
            assert f.description, f"{name} lacks help text"
    assert "Eq. 7" in text and "§3.2" in text


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'history.sze' \(did you mean 'size'\?\)"):
        config_from_dict({"history": {"sze": 3}})
    with pytest.raises(ConfigError, match="unknown key 'histroy'"):
        config_from_dict({"histroy": {}})


@pytest.mark.parametrize(
    ("tree", "needle"),
    [
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"responder": {"group_size": 1}}, "responder.group_size"),
        ({"questioner": {"reward": "linear"}}, "questioner.reward"),
        ({"verifier": {"agreement_low": 0.9, "agreement_high": 0.5}}, "agreement_low"),
        ({"data": {"task_weights": {"doc_qa": 1}}}, "unknown task"),
        ({"data": {"task_weights": {"doc_mc": 0, "doc_general_qa": 0, "docmath_qa": 0}}}, "positive weight"),
        ({"run": {"name": "../escape"}}, "run.name"),
        ({"optim": {"betas": [0.9, 1.5]}}, "betas"),
    ],
)
def test_impossible_values_rejected(tree, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        config_from_dict(tree)


def test_overrides_and_round_trip(tmp_path):
    cfg = load_config(None, ["responder.group_size=4", "history.admit=any_correct", "optim.lr=1e-5"])
    assert cfg.responder.group_size == 4 and cfg.history.admit == "any_correct" and cfg.optim.lr == 1e-5
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_a_key_inside_a_mapping_edits_it_rather_than_replacing_it():
    cfg = load_config(None, ["data.task_weights.doc_mc=0"])  # the YAML says nothing of task_weights
    assert cfg.data.task_weights == {"doc_general_qa": 1.0, "doc_mc": 0.0, "docmath_qa": 1.0}
    yaml_given = load_config(CONFIGS / "default.yaml", ["rollout.role_max_new_tokens.questioner=50"])
    assert yaml_given.rollout.role_max_new_tokens["questioner"] == 50
    assert yaml_given.rollout.role_max_new_tokens["verifier"] == 6  # the preset's other caps stay
    assert load_config(None, ["data.task_weights={doc_mc: 1}"]).data.task_weights == {"doc_mc": 1.0}  # whole: replaced


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(None, ["nonsense"])


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_presets_load(preset):
    load_config(CONFIGS / preset)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["engine.gpus_per_rank=0.5"], "whole number of GPUs"),
        (["engine.tensor_parallel=2"], "needs backend: vllm"),
        (["engine.learner_ranks=4", "engine.sequence_parallel=3"], "must divide learner_ranks=4"),
        (["engine.learner_ranks=2", "engine.sequence_parallel=2", "engine.packing=true"], "exclude each other"),
        (["engine.learner_ranks=2", "model.lora_rank=8"], "engine.learner_ranks=1"),
        (["engine.rollout_replicas=2", "model.lora_rank=8"], "rollout_replicas > 1 with LoRA"),
        (["engine.learner_ranks=2", "engine.rollout_replicas=4"], "at most learner_ranks + 1 (3)"),
    ],
)
def test_scale_settings_are_checked(overrides, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(str(CONFIGS / "cpu-smoke.yaml"), overrides)


def test_rollout_engines_get_the_runs_context_not_the_models_position_limit():
    from spell.engine.spec import PolicySpec

    cfg = load_config(CONFIGS / "qwen3-4b-1gpu-lora.yaml", [])
    spec = PolicySpec.from_config(cfg)
    # 16K responder prompts (eval: 16K inputs) + 4K answers, not Qwen3-2507's 262K positions
    assert spec.max_context == 16384 + 4096
    assert PolicySpec.from_config(load_config(None, ["engine.max_model_len=9000"])).max_context == 9000


def test_the_learner_built_in_code_takes_the_runs_layout():
    """Issue 26: engine.shared_prefix and a LearnerSettings made directly (benches, scripts) share one default."""
    from spell.config.engine import EngineConfig
    from spell.engine.learner.core import LearnerSettings

    assert LearnerSettings().shared_prefix is EngineConfig().shared_prefix is True


def test_the_prefill_dtype_reaches_the_policy_and_is_refused_for_vllm():
    """Issue 26: engine.prefill_dtype is the transformers backend's; with vLLM an explicit bf16 would be silently
    ignored ('auto', the default of the config and of a spec built in code, resolves to vLLM's model.dtype)."""
    from spell.engine.spec import PolicySpec

    assert PolicySpec.from_config(load_config(None, [])).prefill_dtype == "auto" == PolicySpec("m").prefill_dtype
    assert load_config(None, ["engine.backend=vllm"]).engine.prefill_dtype == "auto"
    assert PolicySpec.from_config(load_config(None, ["engine.prefill_dtype=bfloat16"])).prefill_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="prefill_dtype applies to the transformers backend"):
        load_config(None, ["engine.backend=vllm", "engine.prefill_dtype=bfloat16"])
    assert PolicySpec.from_config(load_config(None, ["engine.decode_dtype=bfloat16"])).decode_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="decode_dtype applies to the transformers backend"):
        load_config(None, ["engine.backend=vllm", "engine.decode_dtype=bfloat16"])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["engine.sleep_between_phases=false"], "sleep_between_phases: false with rollout replicas"),
        (["engine.gpus_per_rank=0"], "gpus_per_rank: 0 with vLLM rollout replicas"),
        (["engine.tensor_parallel=2"], "tensor_parallel > 1 with rollout replicas"),  # item 2: a hang
    ],
)
def test_layouts_the_cluster_cannot_run_are_refused_in_one_line(overrides, needle):
    """Issue 27 items 2 and 4: colocated vLLM replicas that cannot sleep, sit in GPU-less bundles, or would start
    a tensor-parallel executor in a placement group whose GPUs are taken."""
    sharded = ["engine.backend=vllm", "engine.learner_ranks=2", "engine.rollout_replicas=2"]
    load_config(None, sharded)  # the layout itself is fine
    with pytest.raises(ConfigError, match=needle) as err:
        load_config(None, sharded + overrides)
    assert len(str(err.value).splitlines()) == 2  # the file line, then the one reason


def test_gpu_visibility_settings_reach_every_actors_environment(monkeypatch):
    """Issue 27 item 5: Ray's CUDA_VISIBLE_DEVICES masking and NVLS are settings, and an unmasked actor selects
    the GPU Ray assigned it rather than device 0."""
    from spell.engine.placement import NOSET_VISIBLE, actor_env, local_gpu_index, with_env
    from spell.engine.spec import PolicySpec

    spec = PolicySpec.from_config(load_config(None, ["engine.mask_gpus=false", "engine.nccl_nvls=false"]))
    env = actor_env(spec.mask_gpus, spec.nccl_nvls)
    assert env == {NOSET_VISIBLE: "1", "NCCL_NVLS_ENABLE": "0"}
    assert actor_env() == {}  # the defaults: Ray masks, NVLS on
    opts = with_env({"num_gpus": 1, "runtime_env": {"env_vars": {"SPELL_FAULT_HACK": "1"}}}, env)
    assert opts["runtime_env"]["env_vars"] == {"SPELL_FAULT_HACK": "1", **env} and opts["num_gpus"] == 1
    monkeypatch.delenv(NOSET_VISIBLE, raising=False)
    assert local_gpu_index(["5"]) == 0  # masked: the one visible GPU is device 0
    monkeypatch.setenv(NOSET_VISIBLE, "1")
    assert local_gpu_index(["5"]) == 5 and local_gpu_index([]) == 0


def test_the_policy_engine_with_a_gpu_of_its_own_takes_its_own_share():
    """Issue 27 item 12: with a sharded learner the policy actor's engine does not share its GPU."""
    from spell.engine.spec import PolicySpec

    spec = PolicySpec.from_config(load_config(CONFIGS / "paper-qwen2.5-7b-8gpu.yaml"))
    assert (spec.gpu_memory_utilization, spec.replica_gpu_memory_utilization) == (0.85, 0.4)
    plain = PolicySpec.from_config(load_config(None, ["engine.gpu_memory_utilization=0.6"]))
    assert plain.gpu_memory_utilization == plain.replica_gpu_memory_utilization == 0.6


def test_the_attention_setting_reaches_the_learner():
    """Issue 27 item 10: flex_attention (block masks for packed and shared rows) is a setting."""
    import torch

    from spell.engine.models.loading import attention_implementation
    from spell.engine.policy import Policy
    from spell.engine.spec import PolicySpec

    cpu = torch.device("cpu")
    assert attention_implementation(cpu) == "sdpa" and attention_implementation(cpu, "sdpa") == "sdpa"
    assert attention_implementation(torch.device("cuda"), "flex_attention") == "flex_attention"
    assert attention_implementation(cpu, "flex_attention") == "sdpa"  # torch's flex has no CPU backward
    with pytest.raises(ValueError, match=r"engine\.attention must be one of"):
        attention_implementation(cpu, "eager-ish")
    with pytest.raises(ConfigError, match="attention"):
        load_config(None, ["engine.attention=eager-ish"])
    spec = PolicySpec.from_config(load_config(None, ["model.path=tiny:qwen2", "engine.attention=sdpa"]))
    assert spec.attention == "sdpa" and Policy(spec).model.config._attn_implementation == "sdpa"
