"""What changed between two revisions' configs, as a list of paths."""

from typing import Any


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        if not value and prefix:
            out[prefix] = {}
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif (
        isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value)
    ):
        # Lists of things with ids (tools) are compared by id, not position.
        for item in value:
            _flatten(item, f"{prefix}[id={item['id']}]", out)
    else:
        out[prefix] = value


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    _flatten(before, "", old)
    _flatten(after, "", new)
    changes = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            changes.append({"path": path, "change": "removed", "before": old[path]})
        elif path not in old:
            changes.append({"path": path, "change": "added", "after": new[path]})
        elif old[path] != new[path]:
            changes.append(
                {"path": path, "change": "changed", "before": old[path], "after": new[path]}
            )
    return changes
