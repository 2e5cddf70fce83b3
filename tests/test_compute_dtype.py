"""engine.prefill_dtype=auto (issue 26): bf16 exactly where an fp32 CPU model has native bf16; each branch is
tested on every machine (the CPU probe is passed in or patched), so no result depends on the runner's CPU."""

import pytest
import torch

from spell.engine.rollout import compute_dtype
from spell.engine.rollout.compute_dtype import native_bf16_cpu, rollout_dtype


@pytest.mark.parametrize(
    ("setting", "model", "device", "native", "expected"),
    [
        ("auto", torch.float32, "cpu", True, torch.bfloat16),
        ("auto", torch.float32, "cpu", False, None),  # emulated bf16 is slower than fp32
        ("auto", torch.bfloat16, "cpu", True, None),  # model.dtype=bfloat16 computes in bf16 already
        ("auto", torch.float32, "cuda", True, None),
        ("model", torch.float32, "cpu", True, None),
        ("bfloat16", torch.float32, "cpu", False, torch.bfloat16),  # asked for: given, whatever the CPU
        ("bfloat16", torch.bfloat16, "cpu", False, None),  # no copy of a model already in that dtype
    ],
)
def test_auto_is_bf16_only_for_an_fp32_model_on_a_native_bf16_cpu(setting, model, device, native, expected):
    assert rollout_dtype(setting, model, device, native_bf16=native) == expected


def test_the_cpu_probe_reads_torchs_feature_checks(monkeypatch):
    for probe in compute_dtype.BF16_CPU_PROBES:
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert native_bf16_cpu() is False
    monkeypatch.setattr(torch.cpu, compute_dtype.BF16_CPU_PROBES[-1], lambda: True, raising=False)
    assert native_bf16_cpu() is True
    monkeypatch.delattr(torch.cpu, compute_dtype.BF16_CPU_PROBES[-1])
    assert native_bf16_cpu() is False  # a torch without the check: no bf16 copy


def test_the_policy_reports_and_builds_what_auto_resolved_to(tmp_path, monkeypatch):
    from spell.engine.models.tiny import build_tiny_model
    from spell.engine.policy import Policy, PolicySpec

    path = str(build_tiny_model(tmp_path / "m"))
    for native, copy in ((True, "bfloat16"), (False, "model")):
        monkeypatch.setattr(compute_dtype, "native_bf16_cpu", lambda n=native: n)
        policy = Policy(PolicySpec(path, device="cpu"))
        assert policy.info()["prefill_dtype"] == copy and policy.info()["decode_dtype"] == "model"
        assert (policy.generator.prefill_copy is not None) is native
