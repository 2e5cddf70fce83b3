"""MLflow: one MLflow run per spell run, metrics at step = iteration (sqlite under runs/ by default)."""

from __future__ import annotations

import logging
import time
from typing import Any

from storage.layout import RunLayout

log = logging.getLogger(__name__)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


class Tracker:
    """Thin wrapper so the pipeline logs the same way whether MLflow is local sqlite or a server.

    One MLflow run per spell run; a replay branch gets its own MLflow run, tagged with the main run's id and
    its overrides as params, so the main line's curves never mix with a replay's. The experiment is marked
    as model training, so the MLflow UI opens on runs, not on GenAI traces.
    """

    def __init__(
        self,
        layout: RunLayout,
        uri: str = "",
        experiment: str = "spell",
        branch: str = "",
        iteration: int = 0,
        overrides: list[str] | None = None,
    ):
        import mlflow

        self.mlflow, self.layout = mlflow, layout
        self.uri = uri or f"sqlite:///{layout.runs_dir / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        client = mlflow.MlflowClient()
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            art = (layout.runs_dir / "mlartifacts").as_uri()
            exp_id = mlflow.create_experiment(experiment, artifact_location=art)
            client.set_experiment_tag(exp_id, "mlflow.experimentKind", "custom_model_development")
        else:
            exp_id = exp.experiment_id
        self.run_id = self._run_id(client, exp_id, layout.root / "mlflow_run_id", layout.run, {"spell.run": layout.run})
        if branch:
            parent = self.run_id
            name = f"{layout.run}-iter{iteration}-{branch}"
            tags = {"spell.run": layout.run, "spell.branch": branch, "spell.parent_run_id": parent,
                    "mlflow.parentRunId": parent}  # fmt: skip
            self.run_id = self._run_id(client, exp_id, layout.iter_dir(iteration, branch) / "mlflow_run_id", name, tags)
            for i, ov in enumerate(overrides or []):
                client.log_param(self.run_id, f"replay.override.{i}", ov)
        client.update_run(self.run_id, status="RUNNING")

    @staticmethod
    def _run_id(client: Any, exp_id: str, id_file: Any, name: str, tags: dict[str, str]) -> str:
        if id_file.is_file():
            return id_file.read_text().strip()
        run = client.create_run(exp_id, run_name=name, tags=tags)
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run.info.run_id)
        return str(run.info.run_id)

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the MLflow run ended (FINISHED, FAILED or KILLED); the next iteration sets it RUNNING again."""
        self.mlflow.MlflowClient().set_terminated(self.run_id, status)

    def log_config(self, config: dict[str, Any]) -> None:
        client = self.mlflow.MlflowClient()
        existing = client.get_run(self.run_id).data.params
        for k, v in _flatten(config).items():
            if k not in existing:
                client.log_param(self.run_id, k, v)

    def log_iteration(self, k: int, metrics: dict[str, float], tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric

        client = self.mlflow.MlflowClient()
        ts = int(time.time() * 1000)

        batch = [Metric(key, float(v), ts, k) for key, v in metrics.items() if v is not None]
        for i in range(0, len(batch), 900):
            client.log_batch(self.run_id, metrics=batch[i : i + 900])
        for key, v in (tags or {}).items():
            client.set_tag(self.run_id, key, v)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        hist = self.mlflow.MlflowClient().get_metric_history(self.run_id, key)
        return sorted((m.step, m.value) for m in hist)
