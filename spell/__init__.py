"""spell: SPELL self-play RL for long-context language models (arXiv 2509.23863).

The algorithm (config, roles, rewards, advantages, loss, history memory, sampling, batch selection)
is importable without Prefect or Ray; engines and orchestration live in their own modules.
"""

__version__ = "0.1.0"
