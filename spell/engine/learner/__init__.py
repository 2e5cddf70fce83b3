"""The learner: the role-blind GRPO step, its row layouts, FSDP2 sharding and the Ray learner group."""
