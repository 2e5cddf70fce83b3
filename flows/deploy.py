"""`spell deploy`: serve the flows as deployments on the Prefect server named by PREFECT_API_URL.

    prefect server start --host 127.0.0.1 &      # then export PREFECT_API_URL=http://127.0.0.1:4200/api
    spell deploy --config configs/default.yaml --runs-dir runs &
    prefect deployment run spell-iteration/local -p run=demo --watch

The deploy process starts one private Ray instance (loopback only) and its flow runs join it, so the
policy actor of a run stays warm from one deployment run to the next (`engine.warm_policy_seconds`).
Each deployment's parameters hold the config path, the runs dir and the deploy's `--set` overrides
(`deployment_overrides`); a run's own `-p overrides='[...]'` add to them.
"""

from __future__ import annotations

import os
from pathlib import Path

from spell.config import ConfigError, load_config


def serve_all(
    config: str = "configs/cpu-smoke.yaml", runs_dir: str = "runs", overrides: list[str] | None = None
) -> None:
    path = Path(config).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {config} (spell deploy --config <preset>; see configs/)")
    load_config(str(path), overrides)  # a bad preset or override fails here, not in every flow run
    runs = str(Path(runs_dir).resolve())
    from spell.engine.ray_policy import SHARED_RAY, connect, shared_address

    connect("local")
    os.environ[SHARED_RAY] = shared_address()  # inherited by every flow-run process the runner starts

    from prefect import serve

    from flows.eval import spell_eval
    from flows.iteration import spell_iteration, spell_train
    from flows.replay import spell_replay

    params = {"config": str(path), "runs_dir": runs, "deployment_overrides": list(overrides or [])}
    print(f"serving spell-iteration/local, spell-train/local, spell-replay/local, spell-eval/local: config {path}, "
          f"runs dir {runs}, warm policies in Ray at {os.environ[SHARED_RAY]}", flush=True)  # fmt: skip
    serve(
        spell_iteration.to_deployment(name="local", parameters=params),
        spell_train.to_deployment(name="local", parameters=params),
        spell_replay.to_deployment(name="local", parameters={"runs_dir": runs}),
        spell_eval.to_deployment(name="local", parameters={"runs_dir": runs}),
    )
