"""The policy as a named Ray actor in a private local Ray instance."""

import pytest

from spell.engine.learner.core import LearnerSettings
from spell.engine.policy import PolicySpec
from spell.engine.ray_policy import kill_policy_actor, policy_actor

pytestmark = pytest.mark.ray


def test_named_actor_generate_train_checkpoint_recreate(ray_local, tiny_model_dir, tmp_path):
    ray = ray_local
    spec = PolicySpec(model_path=tiny_model_dir, learner=LearnerSettings(lr=1e-3))
    root = str(tmp_path / "ckpt")
    actor = policy_actor("spell-test-policy", spec, checkpoint_root=root)
    assert policy_actor("spell-test-policy", spec) is not None  # reached by name, not rebuilt

    out = ray.get(actor.generate.remote(["hello", "world"], {"n": 2, "max_new_tokens": 5, "seed": 0}))
    assert len(out) == 2 and len(out[0]) == 2 and type(out[0][0]["text"]) is str

    seq = {"prompt_ids": [5, 6, 7], "response_ids": out[0][0]["token_ids"], "advantage": 1.0}
    metrics = ray.get(actor.train_step.remote([seq]))
    assert type(metrics["loss"]) is float and metrics["skipped"] == 0.0
    lp_trained = ray.get(actor.logprobs.remote([seq]))
    ray.get(actor.save.remote(root, "step_1", {"iteration": 1}))

    assert kill_policy_actor("spell-test-policy")
    again = policy_actor("spell-test-policy", spec, checkpoint_root=root)
    info = ray.get(again.info.remote())
    assert info["learner_steps"] == 1
    assert ray.get(again.logprobs.remote([seq]))[0] == pytest.approx(lp_trained[0], abs=1e-6)
    kill_policy_actor("spell-test-policy")


def test_a_running_actor_is_reused_only_while_it_matches_the_run(ray_local, tiny_model_dir, tmp_path):
    """Warm actors (spell deploy) must never serve a run they do not fit: another spec, or weights that are not
    those of the checkpoint the run starts from, replace the actor."""
    from dataclasses import replace

    ray = ray_local
    spec = PolicySpec(model_path=tiny_model_dir, learner=LearnerSettings(lr=1e-3))
    root = str(tmp_path / "ckpt")
    handles = []  # a non-detached actor dies with its last handle: keep them

    def info(s):
        handles.append(policy_actor("spell-warm-test", s, checkpoint_root=root))
        return ray.get(handles[-1].info.remote())

    first, same = info(spec), info(spec)
    assert same["started_at"] == first["started_at"] and same["pid"] == first["pid"]
    other = replace(spec, learner=LearnerSettings(lr=2e-3))
    changed = info(other)
    assert changed["started_at"] != first["started_at"]  # another config: rebuilt
    seq = {"prompt_ids": [5, 6, 7], "response_ids": [8, 9], "advantage": 1.0}
    ray.get(handles[-1].train_step.remote([seq], 1))  # the step of iteration 1, never checkpointed
    rebuilt = info(other)
    assert rebuilt["started_at"] != changed["started_at"] and rebuilt["trained_iteration"] == 0
    kill_policy_actor("spell-warm-test")
