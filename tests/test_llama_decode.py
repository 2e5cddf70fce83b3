"""The written-out decode step (engine.decode_step=direct, issue 26) against the model's own forward.

Both run in fp32 and differ only in summation order (oneDNN's packed kernel against MKL's, fused q/k/v, the
prompt and own-token attention parts summed apart): on these tiny models, whose logits stay below 10 in
magnitude, that is differences of order 1e-6; the tests allow 1e-4."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from spell.engine.padding import left_padded
from spell.engine.rollout import llama_decode
from spell.engine.rollout.hf_backend import TransformersGenerator
from spell.engine.rollout.interface import SamplingParams, render_prompt
from spell.engine.rollout.kv_cache import preallocated_cache
from spell.engine.rollout.llama_decode import DecodeWeights, SharedPromptDecoder, unsupported_reason

PROMPTS = [
    "hello",
    "The bridge opened in 1932 and cost four million dollars. In which year did it open?",
    [{"role": "user", "content": "Read <text>x</text> and answer."}],
    "Revenue grew from 1,200 to 1,500 million",
]
BOUND = 1e-4


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from spell.engine.models.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama", hidden_size=96, heads=6))


def lockstep(model, tok, n, steps=10, drops=(3, 6)):
    """Prefill the prompts (left-padded) once, then feed both paths the same tokens (row i the model path's
    (i mod 3)-th most likely, so a prompt's samples differ): the model's forward over the n-fold cache, the
    written-out step over one copy a prompt; rows leave at `drops`. Yields each step's two logits."""

    def pick(logits):
        return logits.topk(3, -1).indices[torch.arange(len(logits)), torch.arange(len(logits)) % 3]

    input_ids, attn, pos = left_padded([render_prompt(tok, p) for p in PROMPTS])
    cache = preallocated_cache(model.config, steps + 1)
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True, cache=cache)
        kv = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        state = SharedPromptDecoder(DecodeWeights(model).refresh(), kv, attn, n, steps)
        cache.batch_repeat_interleave(n)
        mask, last = attn.repeat_interleave(n, 0), pos[:, -1].repeat_interleave(n)
        token = pick(out.logits[:, -1].repeat_interleave(n, 0))
        for step in range(steps):
            if step in drops:  # every third live row finishes
                idx = torch.tensor([i for i in range(len(token)) if i % 3 != 1])
                cache.batch_select_indices(idx)
                state.keep(idx)
                mask, last, token = mask[idx], last[idx], token[idx]
            mask, last = torch.cat([mask, mask.new_ones((len(token), 1))], 1), last + 1
            ref = model(input_ids=token[:, None], attention_mask=mask, position_ids=last[:, None], use_cache=True,
                        cache=cache).logits[:, -1]  # fmt: skip
            got = state.step(token, last)
            yield ref, got
            token = pick(ref)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("packed", [True, False])
def test_the_written_out_step_gives_the_models_logits(arch, n, packed, tiny_model_dir, llama_dir, monkeypatch):
    """Left padding, n samples over one copy of the prompt, rows leaving (the second drop compacts the state);
    with oneDNN's packed kernel and with plain F.linear (a build without it)."""
    if not packed:
        monkeypatch.setattr(llama_decode, "packed_kernel_works", lambda dtype: False)
    path = tiny_model_dir if arch == "qwen2" else llama_dir
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    pairs = list(lockstep(model, tok, n))
    assert len(pairs) == 10 and pairs[-1][0].shape[0] < len(PROMPTS) * n
    assert max(ref.abs().max().item() for ref, _ in pairs) < 10  # the premise of the bound
    assert max((ref - got).abs().max().item() for ref, got in pairs) < BOUND


def peaked(path):
    """The tiny model with its head scaled (logits of a trained model's spread: the greedy token's lead over
    the next is far above the bound, so both paths pick the same tokens)."""
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40.0)
    return model


def test_the_generator_decodes_the_same_tokens_either_way_and_follows_the_learner(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = peaked(tiny_model_dir)
    direct = TransformersGenerator(model, tok, token_budget=2048)
    plain = TransformersGenerator(model, tok, token_budget=2048, decode_step="model")
    assert direct.direct is not None and plain.direct is None
    greedy = SamplingParams(n=3, temperature=0, max_new_tokens=12)

    def tokens(gen, params=greedy):
        return [[c.token_ids for c in row] for row in gen.generate(PROMPTS, params)]

    calls = {"model": 0}
    hook = model.register_forward_pre_hook(lambda *_: calls.__setitem__("model", calls["model"] + 1))
    got = tokens(direct)
    hook.remove()
    assert calls["model"] == 1 and direct.decode_steps > 0  # one batch: the model prefilled, the step decoded
    assert direct.direct.layers == [] and direct.direct.head is None  # the packed copy is not held between calls
    assert got == tokens(plain)
    with torch.no_grad():  # a learner step, in place: the next call decodes with the new weights
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert tokens(direct) == tokens(plain)
    sampled = SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=5)
    assert tokens(direct, sampled) == tokens(direct, sampled)  # reproducible from the seeds


def test_bf16_linears_in_the_written_out_step(tiny_model_dir):
    """engine.decode_dtype=bfloat16 with the direct step: every Linear holds bf16 weights and computes in bf16
    (the head's outputs are bf16 values, the fp32 model's are not), near the model's logits with each Linear in
    bf16 (within bf16 rounding: here 1% of the logits' range); the model's weights stay fp32 and untouched."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    master = {k: v.clone() for k, v in model.state_dict().items()}
    w16 = DecodeWeights(model, torch.bfloat16).refresh()
    assert TransformersGenerator(model, tok, decode_dtype=torch.bfloat16).decode_copy is None  # the step holds them
    ids = torch.tensor([render_prompt(tok, PROMPTS[1])])
    with torch.inference_mode():
        cache = preallocated_cache(model.config, 0)
        model(input_ids=ids[:, :-1], use_cache=True, cache=cache)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        last = torch.tensor([ids.shape[1] - 1])
        got = SharedPromptDecoder(w16, kv, torch.ones_like(ids[:, :-1]), 1, 4).step(ids[:, -1], last)
        fp32 = model(input_ids=ids).logits[:, -1]
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        saved = [m.forward for m in linears]
        try:
            for m in linears:
                m.forward = lambda x, m=m: F.linear(
                    x.bfloat16(), m.weight.bfloat16(), None if m.bias is None else m.bias.bfloat16()
                ).float()
            want = model(input_ids=ids).logits[:, -1]
        finally:
            for m, f in zip(linears, saved, strict=True):
                m.forward = f
    lins = [lin for layer in w16.layers for lin in layer if isinstance(lin, llama_decode.DecodeLinear)]
    assert len(lins) == 4 * model.config.num_hidden_layers and all(lin.dtype == torch.bfloat16 for lin in lins)
    assert torch.equal(got, got.bfloat16().float()) and not torch.equal(fp32, fp32.bfloat16().float())
    assert (got - want).abs().max() < 1e-2 * fp32.abs().max()
    assert all(v.dtype == torch.float32 and torch.equal(v, master[k]) for k, v in model.state_dict().items())


def test_models_it_does_not_fit_decode_through_their_own_forward(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    assert "LoRA" in (unsupported_reason(lora) or "")
    assert TransformersGenerator(lora, tok, token_budget=2048).direct is None
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64))
    assert "gpt2" in (unsupported_reason(gpt2) or "")
    with pytest.raises(ValueError, match="does not fit"):
        DecodeWeights(gpt2)
