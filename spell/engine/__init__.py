"""The engines, role-blind: they see token ids, masks and per-sequence advantages, never a SPELL role's rule.

- `rollout/`: generation backends (transformers, vLLM, scripted) and rollout replicas, behind the
  `Generator` and `RolloutReplica` protocols of `rollout/interface.py`;
- `learner/`: the GRPO step (`core`), its row layouts (padded, packed, shared prefix), FSDP2 sharding and
  the Ray learner group, Ulysses sequence parallelism;
- `sync/`: weights from the learner to the rollout engines (broadcast groups, the sharded learner's rank 0,
  the vLLM worker extension);
- `models/`: loading a model (packaged, tiny, local), checkpoints;
- `placement.py` (what fits the cluster), `batching.py` (token-budget batching);
- `policy.py`: the policy (one model, its rollout engine and learner), `ray_policy.py`: it as a named Ray
  actor; `spec.py`: what the driver sends it, with no torch import.
"""
