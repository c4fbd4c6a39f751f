"""The program config: its current shape (validated, published as JSON schema) and the
registry of migrations that upgrade older shapes step by step.

Versions:
- 1: the legacy frontend's localStorage shape (camelCase, tool type `diff`, `minDefectArea`,
  `triggerMode`/`exposure` at the top, the master image inline as `masterImage`).
- 2: snake_case; tool type `difference`; acquisition settings grouped; the master image is no
  longer part of the config (it is referenced by SHA-256 beside it).
- 3 (current): explicit alignment settings, and an `enabled` flag per tool. Its model is the
  shared contract `loupe_shared.contracts.program_config`, which the workers read too.
"""

from collections.abc import Callable
from typing import Any

from loupe_shared.contracts.program_config import SCHEMA_VERSION, Alignment, ProgramConfig

__all__ = [
    "CURRENT_VERSION",
    "ConfigUpgradeError",
    "ProgramConfig",
    "detect_version",
    "json_schema",
    "upgrade",
]

CURRENT_VERSION = SCHEMA_VERSION


def json_schema() -> dict[str, Any]:
    return ProgramConfig.model_json_schema()


# --- migrations --------------------------------------------------------------------------

Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}


def step(from_version: int) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS[from_version] = fn
        return fn

    return register


_V1_TOOL_TYPES = {
    "presence": "presence",
    "diff": "difference",
    "difference": "difference",
    "brightness": "brightness",
}


def _tools(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools of an older config, checked for the shape a migration step relies on."""
    tools = config.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ConfigUpgradeError(f"tools: not an array but a JSON {_kind(tools)}")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ConfigUpgradeError(f"tools.{index}: not an object but a JSON {_kind(tool)}")
    return tools


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )


@step(1)
def v1_to_v2(config: dict[str, Any]) -> dict[str, Any]:
    tools = []
    for index, tool in enumerate(_tools(config)):
        kind = _V1_TOOL_TYPES.get(str(tool.get("type")))
        if kind is None:
            raise ConfigUpgradeError(
                f"tools.{index}.type: unknown legacy tool type {tool.get('type')!r}"
            )
        upgraded = {
            "id": tool.get("id") or f"tool_{index}",
            "name": tool.get("name", ""),
            "type": kind,
            "roi": tool.get("roi"),
            "threshold": tool.get("threshold", 30),
            "min_defect_area": tool.get("minDefectArea", tool.get("min_defect_area", 1)),
        }
        tools.append(upgraded)
    acquisition: dict[str, Any] = {}
    if "triggerMode" in config:
        acquisition["trigger_mode"] = config["triggerMode"]
    if "exposure" in config:
        acquisition["exposure"] = config["exposure"]
    return {"schema_version": 2, "tools": tools, "acquisition": acquisition}


@step(2)
def v2_to_v3(config: dict[str, Any]) -> dict[str, Any]:
    tools = [{**tool, "enabled": tool.get("enabled", True)} for tool in _tools(config)]
    return {
        "schema_version": 3,
        "tools": tools,
        "alignment": config.get("alignment") or Alignment().model_dump(),
        "acquisition": config.get("acquisition") or {},
    }


class ConfigUpgradeError(ValueError):
    pass


def detect_version(config: dict[str, Any]) -> int:
    version = config.get("schema_version")
    if version is None:
        # The legacy frontend never wrote a version.
        return 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigUpgradeError(f"schema_version: {version!r} is not a version number")
    return version


def upgrade(config: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Bring `config` to the current version; answers it and the version it came in."""
    original = detect_version(config)
    if original > CURRENT_VERSION:
        raise ConfigUpgradeError(
            f"schema_version: {original} is newer than this server's {CURRENT_VERSION}"
        )
    version, current = original, dict(config)
    while version < CURRENT_VERSION:
        current = MIGRATIONS[version](current)
        version += 1
    return current, original
