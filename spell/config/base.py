"""Building blocks of the config tree: the section base class, the field helper, the config error."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spell.errors import SpellError


class ConfigError(SpellError, ValueError):
    """A config file or override that cannot be used; the message names the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _field(default: Any, help: str, **kw: Any) -> Any:
    return Field(default, description=help, **kw)
