"""Rollout replicas: prompts split between the policy actor and generation-only copies, every prompt
answered once in order, and the trained weights reach every replica after a step, by broadcast (gloo on CPU),
not through the object store."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]
GREEDY = {"n": 1, "temperature": 0.0, "max_new_tokens": 6}


def test_replicas_split_prompts_and_receive_new_weights(ray_local, tiny_model_dir):
    import ray

    from spell.engine.learner.core import LearnerSettings
    from spell.engine.policy import PolicySpec
    from spell.engine.ray_policy import kill_policy_actor, policy_actor

    spec = PolicySpec(model_path=tiny_model_dir, rollout_replicas=3, learner=LearnerSettings(lr=5e-2))
    actor = policy_actor("replicated", spec)
    try:
        prompts = [f"question number {i}" for i in range(7)]
        out = ray.get(actor.rollout.remote(prompts, {**GREEDY, "n": 2}))
        rendered = ray.get(actor.render.remote(prompts))
        assert [r["prompt_ids"] for r in out] == rendered  # every prompt once, in order
        assert [c["prompt_index"] for r in out for c in r["completions"]] == [i for i in range(7) for _ in (0, 1)]
        before = ray.get(actor.rollout.remote(["hello"] * 3, GREEDY))  # one prompt per engine
        assert len({tuple(r["completions"][0]["token_ids"]) for r in before}) == 1  # same weights everywhere
        seq = {"prompt_ids": before[0]["prompt_ids"], "response_ids": before[0]["completions"][0]["token_ids"],
               "advantage": -1.0}  # fmt: skip
        for _ in range(4):
            m = ray.get(actor.train_step.remote([seq]))
        n_params = ray.get(actor.info.remote())["parameters"]  # tied weights counted once, like the push
        assert m["weight_sync_bytes"] == 4 * n_params and m["weight_sync_seconds"] > 0  # fp32 on CPU, by gloo
        after = ray.get(actor.rollout.remote(["hello"] * 3, GREEDY))
        tokens = [tuple(r["completions"][0]["token_ids"]) for r in after]
        assert len(set(tokens)) == 1 and tokens[0] != tuple(seq["response_ids"])  # all engines moved together
    finally:
        kill_policy_actor("replicated")
