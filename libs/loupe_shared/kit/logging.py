"""Structured JSON logs with keyword fields; the request id is bound per request."""

import functools
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, MutableMapping
from datetime import date, time
from typing import Any

import orjson
import structlog

_SECRET = re.compile("authorization|password|secret|token|cookie", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _secret(key: str) -> bool:
    """Whether a field of this name is redacted (asked once a name: the same dozen names
    come with every line)."""
    return bool(_SECRET.search(key)) and key != "token_id"


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _secret(key):
            event_dict[key] = "[redacted]"
    return event_dict


def _dumps(value: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """One log line's JSON, ASCII only (a line holds no character some reader takes for a
    line break, U+2028 say): orjson's (every request writes one; the standard library's
    encoder was most of what a line cost), or, for a line with other characters or with
    what orjson refuses (an integer wider than 64 bits), the standard library's, escaped."""
    try:
        line = orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        pass
    else:
        if line.isascii():
            return line
    fallback = default or repr

    def plain(thing: Any) -> Any:  # what orjson writes natively, the same way
        if isinstance(thing, uuid.UUID):
            return str(thing)
        if isinstance(thing, date | time):
            return thing.isoformat()
        return fallback(thing)

    return json.dumps(value, default=plain)


def configure_logging(service: str, level: str = "info") -> None:
    """Every log line is one JSON object on stdout, tagged with the service name."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        # Each module's logger is built on its first line after this, not on every line.
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Route the standard library's loggers (uvicorn, alembic, ...) through the same renderer.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    logging.captureWarnings(True)  # Python warnings become log lines too
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access lines are written by the request-id middleware instead, with the request id.
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    """A logger taking an event name and keyword fields: `log.info("thing.happened", n=3)`.

    `configure_logging` makes every logger a filtering bound logger; before it runs (a bare
    import, a test) structlog's default logger answers the same methods."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
