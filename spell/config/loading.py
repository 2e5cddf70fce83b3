"""Loading the config tree from YAML and `key=value` overrides, dumping it, describing every key.

spell config show --config configs/cpu-smoke.yaml      # print the resolved config
spell config help                                       # every key, its default and paper section
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from spell.config.base import ConfigError
from spell.config.tree import SpellConfig


def _section_fields(model: type[BaseModel], path: list[str]) -> list[str]:
    """Known keys at a dotted path, for 'did you mean' hints."""
    cls: Any = model
    for part in path:
        field = cls.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        cls = field.annotation
    return list(cls.model_fields)


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "<root>"
        if e["type"] == "extra_forbidden":
            known = _section_fields(SpellConfig, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = ".".join(loc[:-1]) or "the top level"
            lines.append(f"unknown key '{key}'{hint}; keys allowed in {where}: {', '.join(known)}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"'{key}': {e['msg']}{got_s}")
    return "invalid spell config:\n  " + "\n  ".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, defaults: dict[str, Any]) -> None:
    """Set one key; a key inside a mapping field the YAML left out (`data.task_weights.<task>=0`) edits the
    field's default mapping rather than replacing it with a one-key one."""
    parts = dotted.split(".")
    node, default = tree, defaults
    for depth, p in enumerate(parts[:-1]):
        default = default.get(p, {}) if isinstance(default, dict) else {}
        mapping = depth > 0 and depth == len(parts) - 2 and isinstance(default, dict)  # a field, not a section
        node = node.setdefault(p, dict(default) if mapping else {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` -> (dotted key, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def config_from_dict(tree: dict[str, Any], overrides: list[str] | None = None) -> SpellConfig:
    tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (tree or {}).items()}
    defaults = SpellConfig().model_dump() if overrides else {}
    for ov in overrides or []:
        key, value = parse_override(ov)
        _set_dotted(tree, key, value, defaults)
    try:
        return SpellConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SpellConfig:
    """Load a YAML preset (or the defaults when `path` is None) and apply `key=value` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        tree = loaded or {}
    try:
        return config_from_dict(tree, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path or '<defaults>'}: {exc}") from None


def dump_config(cfg: SpellConfig) -> str:
    """The resolved config as YAML; `load_config` of this text gives back an equal config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def describe_config() -> str:
    """Every key, its default and its help text (for `spell config help`)."""
    out = []
    for sec_name, sec_field in SpellConfig.model_fields.items():
        sec_cls = sec_field.annotation
        assert isinstance(sec_cls, type) and issubclass(sec_cls, BaseModel)
        out.append(f"{sec_name}:")
        for name, f in sec_cls.model_fields.items():
            out.append(f"  {name} = {f.default!r}\n      {f.description}")
    return "\n".join(out)
