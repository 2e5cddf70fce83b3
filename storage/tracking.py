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
    """Thin wrapper so the pipeline logs the same way whether MLflow is local sqlite or a server."""

    def __init__(self, layout: RunLayout, uri: str = "", experiment: str = "spell"):
        import mlflow

        self.mlflow, self.layout = mlflow, layout
        self.uri = uri or f"sqlite:///{layout.runs_dir / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            art = (layout.runs_dir / "mlartifacts").as_uri()
            exp_id = mlflow.create_experiment(experiment, artifact_location=art)
        else:
            exp_id = exp.experiment_id
        id_file = layout.root / "mlflow_run_id"
        if id_file.is_file():
            self.run_id = id_file.read_text().strip()
        else:
            run = mlflow.MlflowClient().create_run(exp_id, run_name=layout.run, tags={"spell.run": layout.run})
            self.run_id = run.info.run_id
            layout.root.mkdir(parents=True, exist_ok=True)
            id_file.write_text(self.run_id)

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
