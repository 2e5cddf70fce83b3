"""`builtin:smoke`: a small synthetic corpus of fictional towns with dates, people and numbers, so that
questions have answers; for tests and the smoke preset."""

from __future__ import annotations

import random
from typing import Any

from spell.vocab import TASKS

_TOWNS = [
    "Varnholt",
    "Ostmere",
    "Kelburn",
    "Dravik",
    "Lunsford",
    "Marrow",
    "Teshlin",
    "Quorra",
    "Bellacombe",
    "Fenwick",
    "Orlay",
    "Zanther",
]
_PEOPLE = ["Edda Krone", "Tomas Vell", "Ilse Marr", "Oren Pask", "Lida Fourn", "Beno Strahl", "Cato Wynn"]
_TRADES = ["wool", "salt", "copper", "glass", "timber", "amber", "linen"]


def _doc(rng: random.Random) -> str:
    town, person, trade = rng.choice(_TOWNS), rng.choice(_PEOPLE), rng.choice(_TRADES)
    year, length, people = rng.randint(1100, 1900), rng.randint(40, 900), rng.randint(300, 90000)
    revenue = rng.randint(12, 950)
    return (
        f"The town of {town} was founded in {year} by {person}. Its bridge is {length} meters long and "
        f"{people} people live there. The {trade} trade earned {revenue} million crowns in the last year."
    )


def synthetic_rows(clusters_per_task: int = 6, docs_per_cluster: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for task in TASKS:
        for i in range(clusters_per_task):
            rows.append(
                {
                    "cluster_id": f"{task}-{i:03d}",
                    "task": task,
                    "documents": [_doc(rng) for _ in range(docs_per_cluster)],
                }
            )
    return rows
