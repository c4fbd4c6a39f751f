import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.middleware import Middleware

from loupe_backup.backups import endpoints as backup_endpoints
from loupe_backup.backups import objects
from loupe_backup.backups.ratelimit import RateLimiter
from loupe_backup.backups.service import BackupService
from loupe_backup.exports import endpoints as export_endpoints
from loupe_backup.limits import JsonBodyLimit
from loupe_backup.schedules import endpoints as schedule_endpoints
from loupe_backup.schedules.scheduler import Scheduler
from loupe_backup.settings import BackupSettings
from loupe_backup.state import AppState, app_state, install
from loupe_shared.kit import db, lease, s3
from loupe_shared.kit.app import create_app
from loupe_shared.kit.lease import Leases
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens
from loupe_shared.kit.state import kit_state
from loupe_shared.kit.tasks import cancel_and_wait


def build(settings: BackupSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings, "loupe-backup")
        client = objects.client(settings)
        try:
            async with nats_and_tokens(app, settings, "loupe-backup") as messaging:
                await s3.ensure_bucket(client, settings.backup_bucket)
                registry = kit_state(app).registry
                leases = Leases(
                    messaging.js,
                    lease.bucket_for(messaging.tokens.bucket),
                    service="backup",
                    ttl_s=settings.lease_ttl_s,
                    renew_s=settings.lease_renew_every_s(),
                    registry=registry,
                )
                backups = BackupService(
                    settings, client, messaging.nats, messaging.js, registry, leases
                )
                await backups.start()
                # A reader waiting for a set is answered as the server begins to shut down.
                kit_state(app).on_drain.append(backups.drain)
                scheduler = Scheduler(backups, settings.schedule_tick_s)
                install(
                    app,
                    AppState(
                        settings=settings,
                        engine=engine,
                        s3=client,
                        rate_limiter=RateLimiter(settings.rate_limit_per_minute),
                        backups=backups,
                        scheduler=scheduler,
                    ),
                )
                ticking = [
                    asyncio.create_task(
                        backups.sweep_interrupted(settings.lease_renew_every_s()),
                        name="backup-interrupted-sweep",
                    )
                ]
                if settings.schedule_tick_s > 0:
                    ticking.append(asyncio.create_task(scheduler.loop(), name="backup-schedules"))
                try:
                    yield
                finally:
                    kit_state(app).on_drain.remove(backups.drain)
                    await cancel_and_wait(ticking)
                    await backups.close()
        finally:
            await engine.dispose()

    async def check_database(request: Request) -> None:
        await db.ping(app_state(request).engine)

    async def check_bucket(request: Request) -> None:
        await s3.bucket_reachable(app_state(request).s3, settings.backup_bucket)

    app = create_app(
        service="backup",
        settings=settings,
        maintenance_guard=False,  # the service that runs restores is not fenced by them
        title="Loupe backup",
        description="Backups of catalog and images: create, verify, restore, schedules.",
        lifespan=lifespan,
        routers=[backup_endpoints.router, schedule_endpoints.router, export_endpoints.router],
        readiness={
            "database": check_database,
            "object_store": check_bucket,
            "nats": check_nats,
            "tokens": check_tokens,
        },
    )

    s3.answer_unavailable_with_503(app, "backup")
    # Innermost (inside the request-id middleware), so a 413 carries the request id.
    app.user_middleware.append(Middleware(JsonBodyLimit, max_bytes=settings.json_body_max_bytes))
    return app
