"""What each pipeline stage computes, as pure functions over plain rows (no Prefect, no storage, no Ray).

`tasks/X.py` (storage and Prefect) reads a stage's inputs from Parquet, asks the policy for completions,
calls the pure functions of `spell/stages/X.py` and writes their rows. Keeping the algorithm here lets anyone
replay a stage from stored rows in a notebook, and lets the tests check every stage without an orchestrator.
"""
