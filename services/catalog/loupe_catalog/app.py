import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request

from loupe_catalog.audit import endpoints as audit_endpoints
from loupe_catalog.audit import tasks as audit_tasks
from loupe_catalog.golden import endpoints as golden_endpoints
from loupe_catalog.image_records import endpoints as image_record_endpoints
from loupe_catalog.image_records import rpc as image_record_rpc
from loupe_catalog.image_records import tasks as image_record_tasks
from loupe_catalog.images_client import ImagesClient
from loupe_catalog.legacy import endpoints as legacy_endpoints
from loupe_catalog.outbox.relay import OutboxRelay
from loupe_catalog.programs import endpoints as program_endpoints
from loupe_catalog.results import endpoints as result_endpoints
from loupe_catalog.results.ingest import Ingester
from loupe_catalog.results.live import LiveFeed
from loupe_catalog.retention import endpoints as retention_endpoints
from loupe_catalog.retention import service as retention_service
from loupe_catalog.schema import endpoints as schema_endpoints
from loupe_catalog.schema import service as schema_service
from loupe_catalog.settings import CatalogSettings
from loupe_shared.kit import consumers, db
from loupe_shared.kit.app import create_app
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens

_log = get_logger("catalog.app")


def build(settings: CatalogSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings, "loupe-catalog")
        images = ImagesClient(settings.images_url)
        tasks: list[asyncio.Task[None]] = []
        try:
            await schema_service.ensure_compatible(engine)
            app.state.engine = engine
            app.state.sessions = db.session_factory(engine)
            app.state.read_pool = await db.create_read_pool(settings, "loupe-catalog")
            app.state.images = images
            app.state.settings = settings
            async with nats_and_tokens(app, settings, "loupe-catalog"):
                relay = OutboxRelay(
                    engine,
                    app.state.js,
                    namespace=settings.namespace,
                    registry=app.state.registry,
                    idle_s=settings.outbox_idle_s,
                    crash_after_publish=settings.outbox_crash_after_publish,
                )
                app.state.relay = relay
                await image_record_rpc.serve(
                    app.state.nats, app.state.js, engine, settings.namespace
                )
                app.state.live_feed = LiveFeed(app.state.nats, settings.namespace)
                # Background writers hold back while a restore runs (see kit.maintenance).
                fence = getattr(app.state, "maintenance", None)
                if settings.ingest_enabled:
                    ingester = Ingester(
                        settings,
                        app.state.js,
                        namespace=settings.namespace,
                        registry=app.state.registry,
                        fetch_messages=settings.ingest_fetch_messages,
                        fence=fence,
                    )
                    tasks.append(asyncio.create_task(ingester.run(), name="results-ingest"))
                if settings.retention_interval_s > 0:
                    tasks.append(
                        asyncio.create_task(
                            _apply_retention(app, settings.retention_interval_s),
                            name="retention",
                        )
                    )
                tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
                dead_letters = consumers.DeadLetters.of(app.state.registry)
                for name, stream, subject, durable, handler in (
                    (
                        "image-records",
                        "IMAGES",
                        "images.>",
                        image_record_tasks.DURABLE,
                        image_record_tasks.handler(engine),
                    ),
                    ("audit", "AUDIT", "audit.>", audit_tasks.DURABLE, audit_tasks.handler(engine)),
                ):
                    consumer = consumers.consume(
                        app.state.js,
                        stream=stream,
                        filter_subject=subject,
                        durable=durable,
                        handler=handler,
                        namespace=settings.namespace,
                        dead_letters=dead_letters,
                        fence=fence,
                    )
                    tasks.append(asyncio.create_task(consumer, name=name))
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with suppress(asyncio.CancelledError):
                            await task
        finally:
            if hasattr(app.state, "read_pool"):
                try:
                    await asyncio.wait_for(app.state.read_pool.close(), 5)
                except TimeoutError:
                    app.state.read_pool.terminate()
            await images.close()
            await engine.dispose()

    async def check_database(request: Request) -> None:
        await db.ping(request.app.state.engine)

    return create_app(
        service="catalog",
        title="Loupe catalog",
        description="Inspection programs, revisions, image records, results and audit log.",
        lifespan=lifespan,
        routers=[
            schema_endpoints.router,
            program_endpoints.router,
            image_record_endpoints.router,
            image_record_endpoints.storage_router,
            result_endpoints.router,
            retention_endpoints.router,
            audit_endpoints.router,
            golden_endpoints.router,
            legacy_endpoints.router,
        ],
        readiness={"database": check_database, "nats": check_nats, "tokens": check_tokens},
    )


async def _apply_retention(app: FastAPI, interval_s: float) -> None:
    """Apply the retention policies every `interval_s`; a failed round is logged and tried
    again at the next."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await retention_service.run(
                app.state.sessions, retention_service.SCHEDULE, dry_run=False
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.warning("retention.failed", error=str(exc))
