"""DuckDB over the Parquet artifacts: read-only views across every iteration of every run.

    spell history --runs-dir runs "SELECT role, avg(reward) FROM rewards GROUP BY role"

The pipeline never writes a .duckdb file: views are built in an in-memory connection over the
immutable Parquet files (a half-written `*.parquet.tmp` never matches the globs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from storage.schemas import ITERATION_STAGES, ROUND_STAGES, SCHEMAS

VIEWS = (*ROUND_STAGES, *ITERATION_STAGES, "eval_samples", "eval_questions", "eval_tasks")


def _glob(runs_dir: Path, kind: str, run: str | None) -> str:
    if kind.startswith("eval_"):
        return str(runs_dir / (run or "*") / "eval" / f"{kind}_*.parquet")
    pattern = f"{kind}_r*.parquet" if kind in ROUND_STAGES else f"{kind}.parquet"
    return str(runs_dir / (run or "*") / "iter_*" / pattern)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def open_history(runs_dir: str | Path = "runs", run: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per artifact kind (empty views where no file exists).

    `<kind>` views hold the main line only; `<kind>_all` views add every replay branch, with its name in the
    `branch` column ('' for the main line), so a replay never mixes into the main line's totals.
    """
    runs_dir = Path(runs_dir).resolve()
    con = duckdb.connect(":memory:")
    for kind in VIEWS:
        glob = _glob(runs_dir, kind, run)
        if list(runs_dir.glob(str(Path(glob).relative_to(runs_dir)))):
            con.execute(
                f"CREATE VIEW {kind}_all AS SELECT * EXCLUDE (filename), "
                f"coalesce(regexp_extract(filename, 'iter_[0-9]{{4}}\\.([^/]+)/', 1), '') AS branch "
                f"FROM read_parquet({_sql_str(glob)}, union_by_name = true, filename = true)"
            )
        else:
            con.register(f"_{kind}_empty", pa.Table.from_pylist([], schema=SCHEMAS[kind]))
            con.execute(f"CREATE VIEW {kind}_all AS SELECT *, '' AS branch FROM _{kind}_empty")
        con.execute(f"CREATE VIEW {kind} AS SELECT * FROM {kind}_all WHERE branch = ''")
    return con


def query(files: dict[str, list[Path]], sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Run `sql` over views made from explicit file lists (the pipeline's own reads, e.g. history rebuild)."""
    con = duckdb.connect(":memory:")
    try:
        for kind, paths in files.items():
            existing = [str(p) for p in paths if Path(p).is_file()]
            if existing:
                lst = "[" + ", ".join(_sql_str(p) for p in existing) + "]"
                con.execute(f"CREATE VIEW {kind} AS SELECT * FROM read_parquet({lst}, union_by_name = true)")
            else:
                con.register(f"_{kind}_empty", pa.Table.from_pylist([], schema=SCHEMAS[kind]))
                con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _{kind}_empty")
        rel = con.execute(sql, params or [])
        cols = [d[0] for d in rel.description]
        return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]
    finally:
        con.close()


__all__ = ["ITERATION_STAGES", "ROUND_STAGES", "VIEWS", "open_history", "query"]
