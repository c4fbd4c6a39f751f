"""Structured JSON logs with keyword fields; the request id is bound per request."""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("authorization", "password", "secret", "token", "cookie")


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_KEYS) and key != "token_id":
            event_dict[key] = "[redacted]"
    return event_dict


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
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Route the standard library's loggers (uvicorn, alembic, ...) through the same renderer.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
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
