"""Run storage: directory layout, Parquet schemas per stage, atomic writes, DuckDB views, MLflow.

runs/<run>/
  config.yaml                      resolved config of the run
  iter_0001/
    manifest.json                  completed stages, their inputs, config hash and row counts
    config.yaml                    resolved config used by this iteration
    prompts_r01.parquet ...        one file per stage (per dynamic-sampling round where relevant)
    batch.parquet, train_metrics.parquet
  checkpoints/iter_0001/ , LATEST  (see spell.engine.models.checkpoint)
"""
