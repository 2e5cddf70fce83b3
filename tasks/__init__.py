"""Prefect tasks, one module per stage of a self-play iteration. Each task only reads its inputs from
storage, calls `spell` (the policy actor and the pure stage functions) and writes its outputs; it
returns a path and a few numbers, never the data itself."""
