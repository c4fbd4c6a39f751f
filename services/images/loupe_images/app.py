import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request

from loupe_images.images import endpoints as image_endpoints
from loupe_images.images import integrity_endpoints
from loupe_images.images.deletion import Deleter
from loupe_images.images.scrub import Scrubber
from loupe_images.images.thumbnailer import Thumbnailer
from loupe_images.settings import ImagesSettings
from loupe_shared.kit import s3
from loupe_shared.kit.app import create_app
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens


def build(settings: ImagesSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.s3 = s3.client(settings)
        app.state.settings = settings
        thumbnailer = Thumbnailer(
            app.state.s3,
            settings.images_bucket,
            workers=settings.thumbnail_workers,
            timeout_s=settings.thumbnail_timeout_s,
            cache_bytes=settings.thumbnail_cache_bytes,
            cache_ttl_s=settings.thumbnail_cache_ttl_s,
        )
        app.state.thumbnailer = thumbnailer
        tasks: list[asyncio.Task[None]] = []
        try:
            async with nats_and_tokens(app, settings, "loupe-images"):
                deleter = Deleter(
                    app.state.s3,
                    settings.images_bucket,
                    app.state.nats,
                    app.state.js,
                    thumbnailer,
                    settings.namespace,
                    app.state.registry,
                    timeout_s=settings.claim_timeout_s,
                )
                scrubber = Scrubber(
                    app.state.s3,
                    settings.images_bucket,
                    app.state.js,
                    thumbnailer,
                    namespace=settings.namespace,
                    registry=app.state.registry,
                    batch_s=settings.scrub_batch_s,
                    pause_s=settings.scrub_pause_s,
                )
                app.state.deleter = deleter
                app.state.scrubber = scrubber
                if settings.gc_interval_s > 0:
                    tasks.append(
                        asyncio.create_task(
                            deleter.run(
                                interval_s=settings.gc_interval_s, grace_s=settings.gc_grace_s
                            ),
                            name="images-gc",
                        )
                    )
                if settings.scrub_interval_s > 0:
                    tasks.append(
                        asyncio.create_task(
                            scrubber.run(settings.scrub_interval_s), name="integrity-scrub-loop"
                        )
                    )
                try:
                    yield
                finally:
                    scrubber.close()
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with suppress(asyncio.CancelledError, Exception):
                            await task
        finally:
            thumbnailer.close()

    async def check_bucket(request: Request) -> None:
        await s3.bucket_reachable(request.app.state.s3, settings.images_bucket)

    app = create_app(
        service="images",
        title="Loupe images",
        description=(
            "Content-addressed image store: upload, serving, thumbnails, deletion and garbage "
            "collection, integrity scrub."
        ),
        lifespan=lifespan,
        routers=[image_endpoints.router, integrity_endpoints.router],
        readiness={"object_store": check_bucket, "nats": check_nats, "tokens": check_tokens},
    )

    s3.answer_unavailable_with_503(app, "images")
    return app
