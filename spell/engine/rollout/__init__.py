"""Generation: the backends (transformers, vLLM, scripted), rollout rows, and the replicas that share a call."""
