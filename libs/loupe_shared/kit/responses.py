"""A JSON response rendered by orjson: several times faster than the standard encoder, and it
writes datetimes itself. For hot paths whose documents are built by hand."""

import uuid
from typing import Any

import orjson
from starlette.responses import Response


def _default(value: Any) -> str:
    # asyncpg's UUID is a subclass orjson does not take as a UUID.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class FastJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default)
