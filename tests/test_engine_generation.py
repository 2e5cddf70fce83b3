"""Transformers rollout backend: shapes, finish reasons, determinism, token-budget batching."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from spell.engine.batching import token_budget_batches
from spell.engine.rollout.hf_backend import TransformersGenerator
from spell.engine.rollout.interface import SamplingParams, render_prompt

PROMPTS = [
    "hello",
    "The bridge opened in 1932 and cost four million dollars. In which year did it open?",
    [{"role": "user", "content": "Read <text>x</text> and answer."}],
    "Revenue grew from 1,200 to 1,500 million",
]


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return TransformersGenerator(model, tok, token_budget=2048)


def test_shapes_and_finish_reasons(gen):
    out = gen.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=0))
    assert len(out) == len(PROMPTS) and all(len(row) == 3 for row in out)
    for pi, row in enumerate(out):
        for si, c in enumerate(row):
            assert (c.prompt_index, c.sample_index) == (pi, si)
            assert c.prompt_tokens == len(render_prompt(gen.tokenizer, PROMPTS[pi]))
            assert 1 <= len(c.token_ids) <= 8
            assert c.finish_reason in ("stop", "length")
            assert c.finish_reason == "stop" or len(c.token_ids) == 8


def test_eos_gives_stop(gen):
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    first = gen.generate(["hello"], greedy)[0][0]
    third = first.token_ids[2]
    saved = gen.eos_ids
    gen.eos_ids = {third}
    try:
        c = gen.generate(["hello"], greedy)[0][0]
    finally:
        gen.eos_ids = saved
    assert c.finish_reason == "stop" and c.token_ids == first.token_ids[:3]


def test_prompt_too_long_is_reported_not_cut(gen):
    long = "word " * 3000
    out = gen.generate(["short", long], SamplingParams(n=2, max_new_tokens=4, temperature=0))
    assert [c.finish_reason for c in out[1]] == ["prompt_too_long"] * 2
    assert out[1][0].prompt_tokens > 1000 and out[1][0].token_ids == []
    assert all(c.finish_reason != "prompt_too_long" for c in out[0])


def test_deterministic_under_seed(gen):
    p = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=7)
    a = gen.generate(PROMPTS, p)
    b = gen.generate(PROMPTS, p)
    c = gen.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=8))
    ids = lambda out: [[x.token_ids for x in row] for row in out]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_token_budget_batching_equals_one_by_one_greedy(gen):
    greedy = SamplingParams(temperature=0, max_new_tokens=12)
    batched = gen.generate(PROMPTS, greedy)
    single = [gen.generate([p], greedy)[0][0] for p in PROMPTS]
    assert [row[0].token_ids for row in batched] == [c.token_ids for c in single]
    assert [row[0].text for row in batched] == [c.text for c in single]


def test_stop_strings(gen):
    greedy = SamplingParams(temperature=0, max_new_tokens=16)
    base = gen.generate(["hello"], greedy)[0][0]
    stop = base.text[3:5]
    if not stop.strip():
        pytest.skip("generated text has no usable stop string")
    c = gen.generate(["hello"], SamplingParams(temperature=0, max_new_tokens=16, stop=(stop,)))[0][0]
    assert c.finish_reason == "stop" and stop not in c.text and base.text.startswith(c.text)
    kept = gen.generate(["hello"], SamplingParams(temperature=0, max_new_tokens=16, stop=(stop,), include_stop=True))
    assert kept[0][0].text == c.text + stop  # the stop string stays (the questioner's closing fence)


def test_token_budget_batches():
    batches = token_budget_batches([10, 500, 20, 480, 30], extra=20, budget=1100)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    for b in batches:
        longest = max([10, 500, 20, 480, 30][i] for i in b)
        assert len(b) == 1 or len(b) * (longest + 20) <= 1100
    assert token_budget_batches([5000], 10, 100) == [[0]]


def test_sampling_params_validation():
    with pytest.raises(ValueError):
        SamplingParams(n=0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    assert SamplingParams.from_dict({"stop": ["x"], "n": 2}).stop == ("x",)


def test_n_samples_of_one_prompt_differ(gen):
    """Part A 'eval sampling': n samples per question with distinct seeds, never one fixed seed per copy."""
    out = gen.generate(["hello"], SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=0))
    assert len({tuple(c.token_ids) for c in out[0]}) > 1


def test_greedy_equals_model_generate(gen):
    """The decode loop against `model.generate` (the path before it): greedy tokens identical, n rows alike."""
    import torch

    prompt = render_prompt(gen.tokenizer, PROMPTS[1])
    ref = gen.model.generate(
        input_ids=torch.tensor([prompt]), max_new_tokens=12, do_sample=False, pad_token_id=gen.pad_id,
        eos_token_id=sorted(gen.eos_ids),
    )[0, len(prompt):].tolist()  # fmt: skip
    out = gen.generate([prompt], SamplingParams(n=3, temperature=0, max_new_tokens=12))[0]
    eos = next((i for i, t in enumerate(ref) if t in gen.eos_ids), None)
    assert [c.token_ids for c in out] == [ref[: eos + 1] if eos is not None else ref] * 3


def test_every_prompt_sample_has_its_own_seed(gen):
    """Part A 'eval sampling': a sample depends on (seed, prompt index, sample index) alone, not on the other
    prompts of its batch, and identical prompts never share a sample."""
    p = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=3)
    long, short_a, short_b = PROMPTS[1], "hello", "Revenue grew"
    ab = gen.generate([long, short_a], p)
    ac = gen.generate([long, short_b], p)
    assert [c.token_ids for c in ab[0]] == [c.token_ids for c in ac[0]]
    twins = gen.generate([long, long], p)
    assert [c.token_ids for c in twins[0]] != [c.token_ids for c in twins[1]]


def test_prefill_once_per_prompt(gen):
    """n samples of one prompt cost one prefill of its tokens (the KV cache is expanded afterwards)."""
    prompt = render_prompt(gen.tokenizer, PROMPTS[1])
    before = gen.prefill_tokens
    gen.generate([prompt], SamplingParams(n=4, temperature=1.0, max_new_tokens=4, seed=0))
    assert gen.prefill_tokens - before == len(prompt)


def test_shared_prefill_equals_per_sample_copies(tiny_model_dir):
    """`share_prefill=False` (each sample prefills its own copy: the layout before) gives the same tokens, greedy and
    seeded, and computes n times the prompt tokens."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    shared = TransformersGenerator(model, tok, token_budget=2048)
    copies = TransformersGenerator(model, tok, token_budget=2048, share_prefill=False)
    for p in (
        SamplingParams(n=3, temperature=0, max_new_tokens=8),
        SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=5),
    ):
        a, b = shared.generate(PROMPTS, p), copies.generate(PROMPTS, p)
        assert [[c.token_ids for c in row] for row in a] == [[c.token_ids for c in row] for row in b]
    assert copies.prefill_tokens == 3 * shared.prefill_tokens


def test_the_in_place_cache_gives_the_concatenating_caches_tokens(tiny_model_dir):
    """Issue 26: the KV cache written in place (spell.engine.rollout.kv_cache) changes no token: greedy, seeded
    with top-p, several samples per prompt, rows leaving the batch as they finish (stop strings), and a
    buffer that has to grow past its first size."""
    from spell.engine.rollout import kv_cache

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = TransformersGenerator(model, tok, token_budget=2048, preallocate=False)
    now = TransformersGenerator(model, tok, token_budget=2048)
    cases = (
        SamplingParams(n=3, temperature=0, max_new_tokens=12),
        SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=5),
        SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=1, stop=("a",)),
    )
    for p in cases:
        a, b = before.generate(PROMPTS, p), now.generate(PROMPTS, p)
        assert [[c.token_ids for c in row] for row in a] == [[c.token_ids for c in row] for row in b]
    cache = kv_cache.preallocated_cache(model.config, extra=1)
    assert cache is not None
    layer = cache.layers[0]
    k = torch.randn(2, 1, 3, 4)
    for step in range(4):  # 3 + 1 fits; the next ones grow the buffer
        keys, _ = layer.update(k[:, :, :1] + step, k[:, :, :1] + step) if step else layer.update(k, k)
    assert (
        keys.shape == (2, 1, 6, 4) and torch.equal(keys[:, :, :3], k) and torch.equal(keys[:, :, 5:], k[:, :, :1] + 3)
    )


def test_nucleus_from_a_partial_sort_is_the_full_sorts_nucleus():
    """Issue 26: top-p over the most likely candidates (topk) keeps exactly the tokens the full sort keeps, and
    falls back to the full sort where a row's nucleus reaches past the candidates (a flat distribution)."""
    from spell.engine.rollout import hf_backend

    def reference(logits, t, top_p):
        logits = logits.float() / t
        ordered, idx = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        ordered = ordered.masked_fill(probs.cumsum(-1) - probs >= top_p, float("-inf"))
        return torch.full_like(logits, float("-inf")).scatter(-1, idx, ordered)

    gen = torch.Generator().manual_seed(0)
    peaked = torch.randn(6, 5000, generator=gen) * 4  # the nucleus lies inside 256 candidates
    flat = torch.randn(2, 5000, generator=gen) * 0.01  # it does not: the full sort decides
    for logits in (peaked, flat, torch.cat([peaked, flat])):
        for top_p in (0.5, 0.9, 0.95):
            got = hf_backend.filter_logits(logits, 1.0, top_p, -1)
            assert torch.equal(torch.isinf(got), torch.isinf(reference(logits, 1.0, top_p)))
    assert int(torch.isfinite(hf_backend.filter_logits(flat, 1.0, 0.95, -1)).sum(-1).min()) > 256


def test_drawing_among_the_nucleus_is_drawing_from_the_filtered_distribution():
    """Issue 26: the sampler draws among each row's nucleus candidates (`nucleus`) with the weights that
    `filter_logits`' softmax gives them, and the nucleus holds all of the row's mass; a flat row is marked as
    not fitting (it draws over the whole vocabulary); a top-k cut or no top-p leave every row to the full draw."""
    from spell.engine.rollout import hf_backend

    gen = torch.Generator().manual_seed(1)
    peaked = torch.randn(6, 5000, generator=gen) * 4
    for t, top_p in ((1.0, 0.95), (0.7, 0.9), (1.3, 0.5)):
        found = hf_backend.nucleus(peaked, t, top_p, 0)
        assert found is not None
        weights, idx, fits = found
        assert bool(fits.all())
        full = torch.softmax(hf_backend.filter_logits(peaked, t, top_p, 0), dim=-1)
        assert torch.allclose(full.gather(-1, idx).sum(-1), torch.ones(6), atol=1e-5)  # all the mass is there
        assert torch.allclose(weights / weights.sum(-1, keepdim=True), full.gather(-1, idx), atol=1e-6)
    flat = torch.randn(2, 5000, generator=gen) * 0.01
    mixed = hf_backend.nucleus(torch.cat([peaked, flat]), 1.0, 0.95, 0)
    assert mixed is not None and mixed[2].tolist() == [True] * 6 + [False] * 2
    wide = torch.randn(2, 5000, generator=gen) * 0.01  # ~900 tokens hold 0.9 of the mass: past 256, inside 4096
    wide[:, :1000] += 5.0
    assert not bool(hf_backend.nucleus(wide, 1.0, 0.9, 0)[2].any())  # type: ignore[index]
    weights, idx, fits = hf_backend.nucleus(wide, 1.0, 0.9, 0, candidates=hf_backend.WIDE_CANDIDATES)  # type: ignore[misc]
    full = torch.softmax(hf_backend.filter_logits(wide, 1.0, 0.9, 0), dim=-1)
    assert bool(fits.all()) and torch.allclose(weights / weights.sum(-1, keepdim=True), full.gather(-1, idx), atol=1e-6)
    assert hf_backend.nucleus(peaked, 1.0, 0.95, 50) is None and hf_backend.nucleus(peaked, 1.0, 1.0, 0) is None


def test_a_batch_of_fitting_and_flat_rows_samples_each_row_from_its_own_seed(monkeypatch):
    """Issue 26: with some rows drawn among their nucleus in the 256 most likely tokens, some in the 4096 most
    likely, and the flat ones over the whole vocabulary, a row's token depends on its logits and its generator
    only (not on which other rows share the step), stays inside its nucleus, and repeats under the same seeds;
    only the flat rows are sorted whole."""
    from types import SimpleNamespace

    from spell.engine.rollout import hf_backend

    g = torch.Generator().manual_seed(2)
    wide = torch.randn(2, 5000, generator=g) * 0.01
    wide[:, :1000] += 5.0
    rows = torch.cat([torch.randn(3, 5000, generator=g) * 4, torch.randn(2, 5000, generator=g) * 0.01, wide])
    params = SamplingParams(n=1, temperature=1.0, top_p=0.9, max_new_tokens=1, seed=0)
    self = SimpleNamespace()
    allowed = torch.isfinite(hf_backend.filter_logits(rows, 1.0, 0.9, 0))
    sorted_whole = []
    real = hf_backend.filter_logits
    monkeypatch.setattr(hf_backend, "filter_logits", lambda x, *a: sorted_whole.append(len(x)) or real(x, *a))

    def draw(logits, seeds):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return hf_backend.TransformersGenerator._sample(self, logits, params, gens).tolist()

    together = draw(rows, range(7))
    assert sorted_whole == [2]  # the two flat rows
    assert together == draw(rows, range(7))
    assert together == [draw(rows[i : i + 1], [i])[0] for i in range(7)]  # alone, each row draws the same token
    assert all(bool(allowed[i, t]) for i, t in enumerate(together))


def test_the_bf16_prefill_copy_is_the_model_in_bf16_follows_the_learner_and_hands_decoding_back(tiny_model_dir):
    """engine.prefill_dtype=bfloat16 (issue 26): the copy's weights are the model's cast to bf16, re-cast after
    the learner changes them (never a stale policy); the first token is the bf16 model's, the cache comes back
    in fp32 and the fp32 model decodes; the master is left alone."""
    import copy

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = TransformersGenerator(model, tok, token_budget=2048, prefill_dtype=torch.bfloat16, decode_step="model")
    master = {k: v.clone() for k, v in model.state_dict().items()}

    def first_tokens():
        ref = copy.deepcopy(model)
        for p in ref.parameters():
            p.data = p.data.to(torch.bfloat16)
        with torch.inference_mode():
            ids = [render_prompt(tok, p) for p in PROMPTS]
            return [int(ref(input_ids=torch.tensor([x])).logits[0, -1].argmax()) for x in ids]

    one = SamplingParams(n=1, temperature=0, max_new_tokens=1)
    solo = [gen.generate([p], one)[0][0].token_ids[0] for p in PROMPTS]  # unpadded, as the reference
    assert solo == first_tokens()
    assert all(v.dtype == torch.float32 and torch.equal(v, master[k]) for k, v in model.state_dict().items())
    calls = {"model": 0}
    hook = model.register_forward_pre_hook(lambda *_: calls.__setitem__("model", calls["model"] + 1))
    out = gen.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=6, seed=3))
    hook.remove()
    assert calls["model"] == gen.decode_steps > 0 and all(len(c.token_ids) for row in out for c in row)
    with torch.no_grad():  # a learner step, in place
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert [gen.generate([p], one)[0][0].token_ids[0] for p in PROMPTS] == first_tokens()
    assert gen.prefill_copy is not None and gen.prefill_copy._copy is not None
    assert all(
        torch.equal(c, m.to(torch.bfloat16))
        for c, m in zip(gen.prefill_copy._copy.parameters(), model.parameters(), strict=True)
    )
    assert next(gen.prefill_copy._copy.buffers(), torch.zeros(1)).dtype == torch.float32  # rotary stays fp32
    assert TransformersGenerator(model, tok, prefill_dtype=torch.float32).prefill_copy is None  # no copy needed


def test_bf16_decode_linears_share_the_rest_follow_the_learner_and_run_every_decode_step(tiny_model_dir):
    """engine.decode_dtype=bfloat16 (issue 26): the copy's Linear weights are the model's cast to bf16 (re-cast
    after an in-place learner step), every other tensor is the model's own (no second fp32 copy), its logits
    are the model's with each Linear computed in bf16 (and not the fp32 logits), the model prefills and the
    copy takes every decode step."""
    import torch.nn.functional as F

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    gen = TransformersGenerator(model, tok, token_budget=2048, decode_dtype=torch.bfloat16, decode_step="model")
    assert TransformersGenerator(model, tok, decode_dtype=torch.float32, decode_step="model").decode_copy is None
    master = {k: v.clone() for k, v in model.state_dict().items()}
    gen.decode_copy.fresh()  # built first: a deep copy carries the model's hooks, as it carries its modules
    calls = {"model": 0, "copy": 0}
    model.register_forward_pre_hook(lambda *_: calls.__setitem__("model", calls["model"] + 1))
    out = gen.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=6, seed=3))
    assert all(len(c.token_ids) for row in out for c in row) and gen.decode_steps > 0
    assert calls["model"] == 1  # one batch: the prefill alone ran on the model
    assert all(v.dtype == torch.float32 and torch.equal(v, master[k]) for k, v in model.state_dict().items())
    net = gen.decode_copy.fresh()
    net.register_forward_pre_hook(lambda *_: calls.__setitem__("copy", calls["copy"] + 1))
    before = gen.decode_steps
    gen.generate(PROMPTS[:1], SamplingParams(n=1, temperature=0, max_new_tokens=5))
    assert calls["copy"] == gen.decode_steps - before > 0 and calls["model"] == 2
    with torch.no_grad():  # a learner step, in place
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net = gen.decode_copy.fresh()
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    casts = dict(net.named_modules())
    assert linears and all(torch.equal(casts[n].weight16, m.weight.to(torch.bfloat16)) for n, m in linears.items())
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert {p.data_ptr() for p in net.parameters()} <= ptrs  # norms, embeddings: the model's own tensors
    ids = torch.tensor([render_prompt(tok, PROMPTS[0])])
    with torch.inference_mode():
        got, fp32 = net(input_ids=ids).logits, model(input_ids=ids).logits
        saved = {n: m.forward for n, m in linears.items()}
        try:
            for m in linears.values():
                m.forward = lambda x, m=m: F.linear(
                    x.bfloat16(), m.weight.bfloat16(), None if m.bias is None else m.bias.bfloat16()
                ).float()
            want = model(input_ids=ids).logits
        finally:
            for n, m in linears.items():
                m.forward = saved[n]
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, fp32, atol=1e-4)


def test_a_peaked_model_samples_through_the_nucleus_path_reproducibly(tiny_model_dir, monkeypatch):
    """Issue 26: the tiny model's logits are flat (its rows take the full draw); scaled up, they are peaked like
    a trained model's, the generator's rows take the nucleus draw, and a seed gives the same tokens twice."""
    from spell.engine.rollout import hf_backend

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40.0)
    fitted = []
    real = hf_backend.nucleus

    def counting(*args):
        found = real(*args)
        if found is not None:
            fitted.extend(found[2].tolist())
        return found

    monkeypatch.setattr(hf_backend, "nucleus", counting)
    gen = TransformersGenerator(model, tok, token_budget=2048)
    p = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=11)
    first = [[c.token_ids for c in row] for row in gen.generate(PROMPTS, p)]
    assert first == [[c.token_ids for c in row] for row in gen.generate(PROMPTS, p)]
    assert fitted and sum(fitted) > len(fitted) // 2  # most rows drew among their nucleus
