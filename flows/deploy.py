"""`spell deploy`: serve the flows as deployments on the Prefect server named by PREFECT_API_URL.

prefect server start --host 127.0.0.1 &      # then export PREFECT_API_URL=http://127.0.0.1:4200/api
spell deploy &
prefect deployment run spell-iteration/local -p run=demo --watch
"""

from __future__ import annotations

from prefect import serve

from flows.eval import spell_eval
from flows.iteration import spell_iteration, spell_replay, spell_train


def serve_all(config: str = "configs/cpu-smoke.yaml", runs_dir: str = "runs") -> None:
    params = {"config": config, "overrides": [f"run.runs_dir={runs_dir}"]}
    serve(
        spell_iteration.to_deployment(name="local", parameters=params),
        spell_train.to_deployment(name="local", parameters=params),
        spell_replay.to_deployment(name="local", parameters={"runs_dir": runs_dir}),
        spell_eval.to_deployment(name="local", parameters={"overrides": [f"run.runs_dir={runs_dir}"]}),
    )
