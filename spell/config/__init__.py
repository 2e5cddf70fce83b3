"""One typed config tree for spell, loaded from YAML in `configs/`.

Every default lives in exactly one place, with help text naming the paper section (arXiv 2509.23863)
or the spec row it implements, or saying "not in the paper" and why. Unknown keys and impossible values
are rejected with a message that names the key and says why. The rooms:

- `base`: the section base class, the field helper, `ConfigError`;
- `algorithm`: the paper's sections (run, data, history, roles, reward, sampling, rollout, optim);
- `engine`: model, engines and scale; `evaluation`: tracking and benchmarks; `guards`: reward-hacking guards;
- `tree`: the root `SpellConfig` and its cross-section checks; `loading`: YAML, overrides, dump, help.

    spell config show --config configs/cpu-smoke.yaml      # print the resolved config
"""

from spell.config.base import ConfigError
from spell.config.evaluation import EvalConfig
from spell.config.loading import config_from_dict, describe_config, dump_config, load_config, parse_override
from spell.config.tree import SpellConfig

__all__ = [
    "ConfigError",
    "EvalConfig",
    "SpellConfig",
    "config_from_dict",
    "describe_config",
    "dump_config",
    "load_config",
    "parse_override",
]
