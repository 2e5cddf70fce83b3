"""The one error type a user can fix: shown as one line (CLI, Prefect state message), never a traceback."""

from __future__ import annotations


class SpellError(Exception):
    """A problem with the user's input (config, corpus, storage, cluster, benchmark files); the message
    says what is wrong and what to change."""
