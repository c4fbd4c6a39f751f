"""Reading a legacy export: which of its three shapes it is, and each program in it.

Shapes:
- `array`: the `vision_programs` array itself.
- `localstorage`: the whole localStorage object; its values are JSON *strings*
  (`{"vision_programs": "[...]", ...}`), or already parsed values.
- `backup`: the frontend's backup file (`version`, `timestamp`, `metadata`, `data.programs`,
  `data.images`), where an image may sit in `data.images[<program id>]` instead of the
  program's `config.masterImage`.

A shape that cannot be read is refused as a whole (`InputError`); a program that cannot be
read is reported on its own and the others go on. The body is parsed with orjson, which
refuses text that is not Unicode (a lone surrogate such as `\\ud800`, which PostgreSQL would
refuse later) and anything nested past its limit; the document is then held to
`MAX_DEPTH`, far above any real export's.
"""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

LEGACY_KEY = "vision_programs"
MAX_LEGACY_ID = 200
MAX_NAME = 200  # as for any program
MAX_DEPTH = 64


class InputError(ValueError):
    """The export as a whole cannot be read: `not_json`, `too_deep` or `wrong_shape`."""

    def __init__(self, message: str, code: str = "wrong_shape") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class LegacyEntry:
    position: int
    legacy_id: str | None
    name: str | None
    config: dict[str, Any]
    image: str | None
    source_checksum: str
    updated_at: str | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class LegacyInput:
    shape: str
    entries: list[LegacyEntry]


def canonical_checksum(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _too_deep(where: str) -> InputError:
    return InputError(f"{where} is nested deeper than {MAX_DEPTH} levels", "too_deep")


def _check_depth(document: Any, where: str) -> Any:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise _too_deep(where)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return document


def _loads(text: bytes | str, where: str, code: str) -> Any:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise _too_deep(where) from None
        prefix = "not JSON (truncated?)" if code == "not_json" else f"{where} is not JSON"
        raise InputError(f"{prefix}: {exc}", code) from None
    return _check_depth(document, where)


def _decode_string(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    return _loads(value, f"{where} (a string)", "wrong_shape")


def _programs_and_images(document: Any) -> tuple[str, Any, dict[str, Any]]:
    if isinstance(document, list):
        return "array", document, {}
    if not isinstance(document, dict):
        raise InputError(
            "expected the vision_programs array, the localStorage object or a backup file; "
            f"got a JSON {type(document).__name__}"
        )
    data = document.get("data")
    if isinstance(data, dict) and "programs" in data:
        images = data.get("images")
        if images is None:
            images = {}
        if not isinstance(images, dict):
            raise InputError("data.images must be an object of program id to image")
        return "backup", _decode_string(data["programs"], "data.programs"), images
    if LEGACY_KEY in document:
        return "localstorage", _decode_string(document[LEGACY_KEY], LEGACY_KEY), {}
    keys = ", ".join(sorted(str(k) for k in document)[:10]) or "none"
    raise InputError(f"no {LEGACY_KEY} key and no data.programs in this object (its keys: {keys})")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and "\x00" not in value else None


def _entry(position: int, raw: Any, images: dict[str, Any]) -> LegacyEntry:
    checksum = canonical_checksum(raw)
    if not isinstance(raw, dict):
        return LegacyEntry(
            position, None, None, {}, None, checksum, problem="a program must be an object"
        )
    legacy_id = raw.get("id")
    if isinstance(legacy_id, int) and not isinstance(legacy_id, bool):
        legacy_id = str(legacy_id)
    name = _text(raw.get("name"))
    entry = LegacyEntry(
        position,
        legacy_id if isinstance(legacy_id, str) else None,
        name,
        {},
        None,
        checksum,
        updated_at=_text(raw.get("updatedAt")),
    )
    if not isinstance(legacy_id, str) or not legacy_id.strip():
        entry.problem = "no id: a legacy program needs its id to be migrated once"
        return entry
    if len(legacy_id) > MAX_LEGACY_ID:
        entry.problem = f"id longer than {MAX_LEGACY_ID} characters"
        return entry
    if "\x00" in legacy_id:
        # Reported (and recorded) with the NUL written out: PostgreSQL text cannot hold it.
        entry.legacy_id = legacy_id.replace("\x00", "\\u0000")
        entry.problem = "the id contains the NUL character (U+0000)"
        return entry
    if name is None or not name.strip():
        entry.problem = "no name"
        return entry
    if len(name.strip()) > MAX_NAME or any(ord(c) < 32 for c in name.strip()):
        entry.problem = (
            f"the name must be at most {MAX_NAME} characters, without control characters"
        )
        return entry
    config = raw.get("config", {})
    if not isinstance(config, dict):
        entry.problem = "config must be an object"
        return entry
    config = dict(config)
    image = config.pop("masterImage", None)
    if image is None and legacy_id in images:
        image = images[legacy_id]
        # The image lives beside the program in a backup file: it is part of what changes.
        entry.source_checksum = canonical_checksum([raw, image])
    if image is not None and not isinstance(image, str):
        entry.problem = "masterImage must be a data: URL string"
        return entry
    entry.config = config
    entry.image = image or None
    return entry


def parse(body: bytes) -> LegacyInput:
    """Parse an export; raises `InputError` when it is not JSON or not one of the shapes."""
    document = _loads(body, "the body", "not_json")
    shape, programs, images = _programs_and_images(document)
    if not isinstance(programs, list):
        raise InputError(f"the programs must be an array; got a JSON {type(programs).__name__}")
    return LegacyInput(shape, [_entry(i, raw, images) for i, raw in enumerate(programs)])
