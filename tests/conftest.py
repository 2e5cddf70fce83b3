"""Shared fixtures: a tiny random model built offline once per session, a private local Ray."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from spell.engine.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2", arch="qwen2"))


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    import ray

    from spell.engine.ray_policy import connect

    os.environ["SPELL_RAY_TMP"] = str(tmp_path_factory.mktemp("ray"))
    connect("local", num_cpus=2)
    yield ray
    ray.shutdown()
