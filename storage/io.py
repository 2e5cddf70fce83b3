"""Atomic Parquet and JSON writes: a temporary name, fsync, then rename, so a killed process never
leaves a half file that looks complete (readers glob `*.parquet`, never `*.tmp`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spell.files import atomic_write_text as write_text
from spell.files import fsync_replace
from storage.schemas import SCHEMAS


def to_table(kind: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows -> a table with the stage's schema; a missing column is an error, extra keys are dropped."""
    schema = SCHEMAS[kind]
    missing = [f.name for f in schema if rows and f.name not in rows[0]]
    if missing:
        raise KeyError(f"{kind} rows lack columns {missing}")
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def write_rows(path: str | Path, kind: str, rows: list[dict[str, Any]]) -> Path:
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    pq.write_table(to_table(kind, rows), tmp, compression="zstd")
    fsync_replace(tmp, final)
    return final


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))
