from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from loupe_catalog.schema import endpoints as schema_endpoints
from loupe_catalog.schema import service as schema_service
from loupe_catalog.settings import CatalogSettings
from loupe_shared.kit import db
from loupe_shared.kit.app import create_app
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens


def build(settings: CatalogSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings, "loupe-catalog")
        try:
            await schema_service.ensure_compatible(engine)
            app.state.engine = engine
            app.state.sessions = db.session_factory(engine)
            async with nats_and_tokens(app, settings, "loupe-catalog"):
                yield
        finally:
            await engine.dispose()

    async def check_database(request: Request) -> None:
        await db.ping(request.app.state.engine)

    return create_app(
        service="catalog",
        title="Loupe catalog",
        description="Inspection programs, revisions, image records, results and audit log.",
        lifespan=lifespan,
        routers=[schema_endpoints.router],
        readiness={"database": check_database, "nats": check_nats, "tokens": check_tokens},
    )
