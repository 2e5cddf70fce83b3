"""vLLM backend on a GPU: same interface, weights pushed after a step without a restart."""

import pytest

pytestmark = pytest.mark.gpu


def test_vllm_generate_and_weight_sync(tiny_model_dir):
    pytest.importorskip("vllm")
    from spell.engine.learner import LearnerSettings
    from spell.engine.policy import Policy, PolicySpec

    pol = Policy(PolicySpec(model_path=tiny_model_dir, backend="vllm", learner=LearnerSettings(lr=1e-2)))
    greedy = {"n": 1, "temperature": 0.0, "max_new_tokens": 8}
    before = pol.generate(["hello"], greedy)[0][0]
    assert before["finish_reason"] in ("stop", "length") and before["token_ids"]
    seq = {"prompt_ids": pol.render(["hello"])[0], "response_ids": before["token_ids"], "advantage": -1.0}
    for _ in range(5):
        pol.train_step([seq])
    after = pol.generate(["hello"], greedy)[0][0]
    assert after["token_ids"] != before["token_ids"]  # vLLM saw the new weights
