"""Building blocks of the config tree: the section base class, the field helper, the task names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spell.errors import SpellError

TaskName = Literal["doc_general_qa", "doc_mc", "docmath_qa"]
TASKS: tuple[str, ...] = ("doc_general_qa", "doc_mc", "docmath_qa")
RoleName = Literal["questioner", "grounding", "responder", "verifier"]


class ConfigError(SpellError, ValueError):
    """A config file or override that cannot be used; the message names the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _field(default: Any, help: str, **kw: Any) -> Any:
    return Field(default, description=help, **kw)
