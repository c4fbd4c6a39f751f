"""What the catalog builds in its lifespan, held once on the app and read by the handlers
through typed dependencies (`Catalog`, `Images`, `Sessions`)."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loupe_catalog.images_client import ImagesClient
from loupe_catalog.results.live import LiveFeed
from loupe_catalog.results.stored import StoredNotices
from loupe_catalog.settings import CatalogSettings
from loupe_shared.kit.lease import Leases


@dataclass(frozen=True)
class CatalogState:
    settings: CatalogSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    images: ImagesClient
    nats: Client
    js: JetStreamContext
    live_feed: LiveFeed
    stored: StoredNotices
    leases: Leases

    def install(self, app: FastAPI) -> None:
        app.state.catalog = self


def catalog_state(request: Request) -> CatalogState:
    """The catalog's state; the app is not serving before the lifespan set it."""
    state: CatalogState = request.app.state.catalog
    return state


def images_client(request: Request) -> ImagesClient:
    return catalog_state(request).images


def leases(request: Request) -> Leases:
    return catalog_state(request).leases


def sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """Sessions for work that commits by itself, outside the request's own transaction."""
    return catalog_state(request).sessions


Catalog = Annotated[CatalogState, Depends(catalog_state)]
Images = Annotated[ImagesClient, Depends(images_client)]
Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(sessions)]
HeldLeases = Annotated[Leases, Depends(leases)]
