"""The task-type registry: every module in this folder that defines `TASK_TYPE` is a task type.

A new task type is one new module here (a `TaskType` subclass and its instance `TASK_TYPE`) plus its weight in
`data.task_weights`; nothing else switches on task names. The built-in ones come in `spell.vocab.TASKS` order.

    from spell.task_types import get
    get("docmath_qa").rule_score("0.5", "50%")      # 1.0
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from spell.task_types.base import TaskType
from spell.vocab import TASKS


@cache
def registry() -> dict[str, TaskType]:
    found: dict[str, TaskType] = {}
    for info in pkgutil.iter_modules(__path__):
        tt = getattr(importlib.import_module(f"{__name__}.{info.name}"), "TASK_TYPE", None)
        if isinstance(tt, TaskType):
            if tt.name in found:
                raise RuntimeError(f"two task type modules name {tt.name!r}")
            found[tt.name] = tt
    order = [t for t in TASKS if t in found] + sorted(set(found) - set(TASKS))
    return {t: found[t] for t in order}


def names() -> tuple[str, ...]:
    """Every task type's name: the built-in ones first, in the order the batch visits them."""
    return tuple(registry())


def get(name: str) -> TaskType:
    try:
        return registry()[name]
    except KeyError:
        raise ValueError(f"unknown task type {name!r}; known task types are {list(registry())}") from None


def extract_answer(text: str | None, task: str) -> str | None:
    """The parsed prediction of a response for a task, or None when it cannot be parsed."""
    return get(task).extract(text)


def rule_score(task: str, prediction: str | None, reference: str | None, strict: bool = False) -> float:
    """R_rule for a parsed prediction against the questioner's parsed reference (0.0 or 1.0); `strict` drops
    the forgiveness of slips (`TaskType.strict_rule_score`)."""
    if prediction is None or reference is None:
        return 0.0
    tt = get(task)
    return tt.strict_rule_score(prediction, reference) if strict else tt.rule_score(prediction, reference)


__all__ = ["TaskType", "extract_answer", "get", "names", "registry", "rule_score"]
