"""What the inspect service builds at start-up, held once on the app and read typed."""

from dataclasses import dataclass

from fastapi import FastAPI, Request
from minio import Minio
from nats.js.client import JetStreamContext

from loupe_inspect.inspector import Inspector
from loupe_inspect.settings import InspectSettings
from loupe_inspect.worker import Worker


@dataclass(frozen=True)
class InspectState:
    settings: InspectSettings
    s3: Minio
    js: JetStreamContext
    inspector: Inspector
    worker: Worker


def keep(app: FastAPI, held: InspectState) -> None:
    app.state.inspect = held


def state(request: Request) -> InspectState:
    """The service's state; before start-up has built it (readiness asked early) an error."""
    held = getattr(request.app.state, "inspect", None)
    if not isinstance(held, InspectState):
        raise RuntimeError("the inspection service has not started")
    return held
