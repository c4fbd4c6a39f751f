import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request

from loupe_catalog import scrape_metrics
from loupe_catalog.audit import endpoints as audit_endpoints
from loupe_catalog.audit import tasks as audit_tasks
from loupe_catalog.golden import endpoints as golden_endpoints
from loupe_catalog.image_records import endpoints as image_record_endpoints
from loupe_catalog.image_records import rpc as image_record_rpc
from loupe_catalog.image_records import tasks as image_record_tasks
from loupe_catalog.images_client import ImagesClient
from loupe_catalog.legacy import endpoints as legacy_endpoints
from loupe_catalog.legacy.metrics import MigrationMetrics
from loupe_catalog.outbox.relay import OutboxRelay
from loupe_catalog.programs import endpoints as program_endpoints
from loupe_catalog.results import endpoints as result_endpoints
from loupe_catalog.results.ingest import Ingester
from loupe_catalog.results.live import LiveFeed
from loupe_catalog.results.stored import StoredNotices, announce
from loupe_catalog.retention import endpoints as retention_endpoints
from loupe_catalog.retention import service as retention_service
from loupe_catalog.schema import endpoints as schema_endpoints
from loupe_catalog.schema import service as schema_service
from loupe_catalog.settings import CatalogSettings
from loupe_catalog.state import CatalogState, catalog_state
from loupe_catalog.tokens import endpoints as token_endpoints
from loupe_shared.kit import consumers, db, lease
from loupe_shared.kit.app import create_app
from loupe_shared.kit.lease import Leases
from loupe_shared.kit.nats import settled
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens
from loupe_shared.kit.state import kit_state
from loupe_shared.kit.tasks import cancel_and_wait


def build(settings: CatalogSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.create_engine(settings, "loupe-catalog")
        images = ImagesClient(settings.images_url)
        kit = kit_state(app)
        tasks: list[asyncio.Task[None]] = []
        try:
            await schema_service.ensure_compatible(engine)
            sessions = db.session_factory(engine)
            kit.sessions = sessions
            kit.read_pool = await db.create_read_pool(settings, "loupe-catalog")
            async with nats_and_tokens(app, settings, "loupe-catalog") as messaging:
                nc, js = messaging.nats, messaging.js
                leases = Leases(
                    js,
                    lease.bucket_for(messaging.tokens.bucket),
                    service="catalog",
                    ttl_s=settings.lease_ttl_s,
                    renew_s=settings.lease_renew_every_s(),
                    registry=kit.registry,
                )
                stored = StoredNotices(
                    nc, settings.namespace, kit.registry, settings.results_wait_recheck_s
                )
                await stored.start()
                live_feed = LiveFeed(nc, settings.namespace)
                drain_hooks = [stored.close, live_feed.close]
                kit.on_drain.extend(drain_hooks)
                CatalogState(
                    settings=settings,
                    engine=engine,
                    sessions=sessions,
                    images=images,
                    nats=nc,
                    js=js,
                    live_feed=live_feed,
                    stored=stored,
                    leases=leases,
                ).install(app)
                relay = OutboxRelay(
                    engine,
                    js,
                    namespace=settings.namespace,
                    registry=kit.registry,
                    idle_s=settings.outbox_idle_s,
                    crash_after_publish=settings.outbox_crash_after_publish,
                )
                relay.wake_after_commit(sessions)
                await image_record_rpc.serve(nc, js, engine, settings.namespace)
                # Its subscriptions are on the server before the service says it is ready.
                await settled(nc)
                # Background writers hold back while a restore runs (see kit.maintenance).
                fence = kit.maintenance
                if settings.ingest_enabled:
                    ingester = Ingester(
                        settings,
                        js,
                        namespace=settings.namespace,
                        registry=kit.registry,
                        fetch_messages=settings.ingest_fetch_messages,
                        fence=fence,
                        announce=partial(announce, nc, settings.namespace),
                    )
                    tasks.append(asyncio.create_task(ingester.run(), name="results-ingest"))
                if settings.retention_interval_s > 0:
                    tasks.append(
                        asyncio.create_task(
                            retention_service.apply_periodically(
                                leases,
                                sessions,
                                interval_s=settings.retention_interval_s,
                                # A dead replica's run is taken over within about two TTLs.
                                poll_s=settings.lease_renew_every_s(),
                            ),
                            name="retention",
                        )
                    )
                tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
                dead_letters = consumers.DeadLetters.of(kit.registry)
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
                        js,
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
                    for hook in drain_hooks:
                        kit.on_drain.remove(hook)
                    await cancel_and_wait(tasks)
        finally:
            if kit.read_pool is not None:
                try:
                    async with asyncio.timeout(5):
                        await kit.read_pool.close()
                except TimeoutError:
                    kit.read_pool.terminate()
            await images.close()
            await engine.dispose()

    async def check_database(request: Request) -> None:
        await db.ping(catalog_state(request).engine)

    app = create_app(
        service="catalog",
        settings=settings,
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
            token_endpoints.router,
        ],
        readiness={"database": check_database, "nats": check_nats, "tokens": check_tokens},
    )
    registry = kit_state(app).registry
    scrape_metrics.install(registry, settings)
    MigrationMetrics.of(registry)
    return app
