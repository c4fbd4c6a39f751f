"""A legacy program's config brought to the current schema version.

The legacy frontend never wrote a `schema_version`: its configs are version 1 and go through
every step of the catalog's registry (`programs/config.py`: 1 → 2 → 3), then the same
validation as any save. The master image is not part of a config from version 2 on; it is
taken out before (see `parsing.py`).
"""

from dataclasses import dataclass
from typing import Any

from loupe_catalog.programs import config as config_schema
from loupe_catalog.programs import service as programs
from loupe_shared.kit.problems import Problem


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class UpgradedConfig:
    config: dict[str, Any]
    from_version: int
    to_version: int


def upgrade_config(config: dict[str, Any]) -> UpgradedConfig:
    """Raises `ConfigError` with the first reason the config cannot be upgraded."""
    try:
        from_version = config_schema.detect_version(config)
    except config_schema.ConfigUpgradeError as exc:
        raise ConfigError(str(exc)) from None
    try:
        upgraded = programs.validate_config(config)
    except Problem as problem:
        errors = problem.extra.get("errors") or [{"field": "", "message": problem.detail}]
        reasons = [
            f"{e['field'].removeprefix('body:config.').removeprefix('body:config')}: "
            f"{e['message']}".lstrip(": ")
            for e in errors
        ]
        raise ConfigError("; ".join(reasons[:3])) from None
    return UpgradedConfig(upgraded, from_version, config_schema.CURRENT_VERSION)
