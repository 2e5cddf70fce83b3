"""`spell deploy`: serve the flows as deployments on the Prefect server named by PREFECT_API_URL.

    prefect server start --host 127.0.0.1 &      # then export PREFECT_API_URL=http://127.0.0.1:4200/api
    spell deploy --config configs/default.yaml --runs-dir runs &
    prefect deployment run spell-iteration/local -p run=demo --watch

The deploy process starts one private Ray instance (loopback only) and its flow runs join it, so the
policy actor of a run stays warm from one deployment run to the next (`engine.warm_policy_seconds`).
Each deployment's parameters hold the config path, the runs dir and the deploy's `--set` overrides
(`deployment_overrides`); a run's own `-p overrides='[...]'` add to them.

Stopping it (Ctrl-C, SIGTERM, SIGHUP, or the server going away with it) stops its Ray instance, warm
policies included, on every path: a signal stops Ray first and then lets Prefect shut down, which may take
`GRACE_SECONDS` at most (Prefect pauses the deployments through the API, which hangs when the server is gone
too); a crash stops it in `finally`; a SIGKILL leaves it to the reaper (`spell.engine.ray_reaper`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

from spell.config import ConfigError, load_config

GRACE_SECONDS = 10.0  # how long Prefect's graceful shutdown may take after a signal before the process exits


def stop_ray() -> None:
    """Stop this process's Ray instance (the deploy started it: its head processes go, and with the raylet
    every worker and warm policy actor)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _exit_after(seconds: float) -> None:
    timer = threading.Timer(seconds, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def _runner(**kwargs: Any) -> Any:
    from prefect.runner import Runner

    class SpellRunner(Runner):
        """Prefect's runner, with spell's exit: Ray stops before the graceful shutdown, which is bounded."""

        def handle_sigterm(self, *args: Any, **kw: Any) -> None:
            stop_ray()
            _exit_after(GRACE_SECONDS)
            super().handle_sigterm(*args, **kw)

    return SpellRunner(**kwargs)


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
    from spell.engine.ray_reaper import start_reaper

    start_reaper()  # the Ray head just started is this process's only children yet
    os.environ[SHARED_RAY] = shared_address()  # inherited by every flow-run process the runner starts

    from flows.eval import spell_eval
    from flows.iteration import spell_iteration, spell_train
    from flows.replay import spell_replay

    params = {"config": str(path), "runs_dir": runs, "deployment_overrides": list(overrides or [])}
    print(f"serving spell-iteration/local, spell-train/local, spell-replay/local, spell-eval/local: config {path}, "
          f"runs dir {runs}, warm policies in Ray at {os.environ[SHARED_RAY]}", flush=True)  # fmt: skip
    deployments = [
        spell_iteration.to_deployment(name="local", parameters=params),
        spell_train.to_deployment(name="local", parameters=params),
        spell_replay.to_deployment(name="local", parameters={"runs_dir": runs}),
        spell_eval.to_deployment(name="local", parameters={"runs_dir": runs}),
    ]
    runner = _runner(pause_on_shutdown=True)
    for d in deployments:
        runner.add_deployment(d)
    signal.signal(signal.SIGHUP, runner.handle_sigterm)  # a closed terminal stops the deploy as SIGTERM does
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
    finally:
        stop_ray()
