import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from loupe_images import capacity
from loupe_images.images import endpoints as image_endpoints
from loupe_images.images import integrity_endpoints
from loupe_images.images.deletion import Deleter
from loupe_images.images.scrub import Scrubber
from loupe_images.images.thumbnailer import Thumbnailer
from loupe_images.settings import ImagesSettings
from loupe_images.state import ImagesState
from loupe_shared.kit import lease, s3
from loupe_shared.kit.app import create_app
from loupe_shared.kit.lease import Leases
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens
from loupe_shared.kit.state import kit_state
from loupe_shared.kit.tasks import cancel_and_wait


def build(settings: ImagesSettings) -> FastAPI:
    client = s3.client(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        thumbnailer = Thumbnailer(
            client,
            settings.images_bucket,
            workers=settings.thumbnail_workers,
            timeout_s=settings.thumbnail_timeout_s,
            cache_bytes=settings.thumbnail_cache_bytes,
            cache_ttl_s=settings.thumbnail_cache_ttl_s,
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            async with nats_and_tokens(app, settings, "loupe-images") as messaging:
                nc, js = messaging.nats, messaging.js
                registry = kit_state(app).registry
                leases = Leases(
                    js,
                    lease.bucket_for(messaging.tokens.bucket),
                    service="images",
                    ttl_s=settings.lease_ttl_s,
                    renew_s=settings.lease_renew_every_s(),
                    registry=registry,
                )
                deleter = Deleter(
                    client,
                    settings.images_bucket,
                    nc,
                    js,
                    thumbnailer,
                    settings.namespace,
                    registry,
                    leases,
                    timeout_s=settings.claim_timeout_s,
                )
                scrubber = Scrubber(
                    client,
                    settings.images_bucket,
                    js,
                    thumbnailer,
                    leases,
                    namespace=settings.namespace,
                    registry=registry,
                    batch_s=settings.scrub_batch_s,
                    pause_s=settings.scrub_pause_s,
                )
                ImagesState(
                    settings=settings,
                    s3=client,
                    js=js,
                    thumbnailer=thumbnailer,
                    deleter=deleter,
                    scrubber=scrubber,
                ).install(app)
                # Due work is looked for this often, so a dead replica's is taken over within
                # about two lease TTLs.
                poll_s = settings.lease_renew_every_s()
                if settings.gc_interval_s > 0:
                    tasks.append(
                        asyncio.create_task(
                            deleter.run(
                                interval_s=settings.gc_interval_s,
                                grace_s=settings.gc_grace_s,
                                poll_s=poll_s,
                            ),
                            name="images-gc",
                        )
                    )
                if settings.scrub_interval_s > 0:
                    tasks.append(
                        asyncio.create_task(
                            scrubber.run(settings.scrub_interval_s, poll_s),
                            name="integrity-scrub-loop",
                        )
                    )
                try:
                    yield
                finally:
                    await cancel_and_wait(tasks)
                    await scrubber.close()
                    # Thumbnails following answered uploads are stored before NATS closes.
                    await thumbnailer.drain()
        finally:
            thumbnailer.close()

    async def check_bucket(request: Request) -> None:
        await s3.bucket_reachable(client, settings.images_bucket)

    app = create_app(
        service="images",
        settings=settings,
        title="Loupe images",
        description=(
            "Content-addressed image store: upload, serving, thumbnails, deletion and garbage "
            "collection, integrity scrub."
        ),
        lifespan=lifespan,
        routers=[image_endpoints.router, integrity_endpoints.router],
        readiness={"object_store": check_bucket, "nats": check_nats, "tokens": check_tokens},
    )

    capacity.install(kit_state(app).registry, settings)
    s3.answer_unavailable_with_503(app, "images")
    return app
