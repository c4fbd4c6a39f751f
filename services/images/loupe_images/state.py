"""What the images service holds for its lifetime, set once in the lifespan and read by the
handlers through a typed dependency."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from minio import Minio
from nats.js.client import JetStreamContext

from loupe_images.images.deletion import Deleter
from loupe_images.images.scrub import Scrubber
from loupe_images.images.thumbnailer import Thumbnailer
from loupe_images.settings import ImagesSettings


@dataclass(frozen=True)
class ImagesState:
    settings: ImagesSettings
    s3: Minio
    js: JetStreamContext
    thumbnailer: Thumbnailer
    deleter: Deleter
    scrubber: Scrubber

    def install(self, app: FastAPI) -> None:
        app.state.images = self


async def images_state(request: Request) -> ImagesState:
    """The service's state; the app is not serving before the lifespan set it. (Async, so
    FastAPI calls it on the event loop rather than hopping to a worker thread.)"""
    state: ImagesState = request.app.state.images
    return state


State = Annotated[ImagesState, Depends(images_state)]
