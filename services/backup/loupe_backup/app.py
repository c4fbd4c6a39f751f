from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from loupe_backup.settings import BackupSettings
from loupe_shared.kit import db, s3
from loupe_shared.kit.app import create_app
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens


def build(settings: BackupSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings, "loupe-backup")
        app.state.engine = engine
        app.state.s3 = s3.client(settings)
        try:
            async with nats_and_tokens(app, settings, "loupe-backup"):
                yield
        finally:
            await engine.dispose()

    async def check_database(request: Request) -> None:
        await db.ping(request.app.state.engine)

    async def check_bucket(request: Request) -> None:
        await s3.bucket_reachable(request.app.state.s3, settings.backup_bucket)

    return create_app(
        service="backup",
        title="Loupe backup",
        description="Backups of catalog and images: create, verify, restore, schedules.",
        lifespan=lifespan,
        routers=[],
        readiness={
            "database": check_database,
            "object_store": check_bucket,
            "nats": check_nats,
            "tokens": check_tokens,
        },
    )
