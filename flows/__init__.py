"""Prefect flows: `spell-iteration` (one self-play iteration), `spell-train` (many, resumable)."""
