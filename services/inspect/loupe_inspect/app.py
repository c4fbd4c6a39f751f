import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress

import cv2
from fastapi import FastAPI, Request

from loupe_inspect import endpoints, preload, rpc
from loupe_inspect.caches import MasterCache, RevisionCache
from loupe_inspect.inspector import Inspector
from loupe_inspect.metrics import WorkerMetrics
from loupe_inspect.settings import InspectSettings
from loupe_inspect.sources import Blobs, Catalog, Images
from loupe_inspect.state import InspectState, keep, state
from loupe_inspect.worker import Worker
from loupe_shared.kit import s3
from loupe_shared.kit.app import create_app
from loupe_shared.kit.auth import Role
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import settled
from loupe_shared.kit.runtime import check_nats, check_tokens, nats_and_tokens
from loupe_shared.kit.state import kit_state
from loupe_shared.kit.tasks import cancel_and_wait

_log = get_logger("inspect.app")


def worker_id(settings: InspectSettings) -> str:
    return settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"


def build(settings: InspectSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cv2.setNumThreads(settings.opencv_threads)
        # One line per catalog call at info is noise; failures are logged by the worker.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        store = s3.client(settings)
        executor = ThreadPoolExecutor(max(1, settings.threads), thread_name_prefix="inspect")
        tasks: list[asyncio.Task[None]] = []
        try:
            async with nats_and_tokens(app, settings, "loupe-inspect") as messaging:
                tokens, js, nc = messaging.tokens, messaging.js, messaging.nats
                registry = kit_state(app).registry
                me = worker_id(settings)
                token = settings.catalog_token.get_secret_value()
                own_token_id = None
                if not token:
                    record, token = await tokens.create(f"inspect-worker {me}", Role.LINE, me)
                    own_token_id = record.id
                catalog = Catalog(settings.catalog_url, token, settings.catalog_timeout_s)
                images = Images(settings.images_url, token, settings.catalog_timeout_s)
                metrics = WorkerMetrics(registry)
                masters = MasterCache(settings.master_cache_bytes)
                inspector = Inspector(
                    catalog,
                    Blobs(store, settings.images_bucket),
                    executor=executor,
                    masters=masters,
                    revisions=RevisionCache(
                        settings.revision_cache_size, settings.current_revision_ttl_s
                    ),
                    time_limit_s=settings.time_limit_s,
                    max_align_pixels=settings.max_align_pixels,
                    worker_id=me,
                    images=images,
                )
                metrics.master_cache_bytes.set_function(lambda: masters.bytes)
                worker = Worker(
                    js,
                    inspector,
                    metrics,
                    namespace=settings.namespace,
                    durable=settings.durable,
                    concurrency=settings.concurrency,
                    max_deliveries=settings.max_deliveries,
                    retry_delay_s=settings.retry_delay_s,
                    ack_slack_s=settings.ack_slack_s,
                )
                keep(app, InspectState(settings, store, js, inspector, worker))
                await rpc.serve(nc, inspector, settings.namespace)
                if settings.preload:
                    await preload.follow_revisions(nc, inspector, settings.namespace)
                    tasks.append(
                        asyncio.create_task(
                            preload.active_programs(inspector), name="inspect-preload"
                        )
                    )
                # Its subscriptions are on the server before the service says it is ready.
                await settled(nc)
                tasks.append(asyncio.create_task(worker.run(), name="inspect-worker"))
                _log.info("inspect.started", worker=me, concurrency=settings.concurrency)
                try:
                    yield
                finally:
                    await cancel_and_wait(tasks)
                    await catalog.close()
                    await images.close()
                    if own_token_id is not None:
                        with suppress(Exception):
                            await tokens.revoke(own_token_id)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def check_bucket(request: Request) -> None:
        await s3.bucket_reachable(state(request).s3, settings.images_bucket)

    async def check_consumer(request: Request) -> None:
        if not state(request).worker.running:
            raise RuntimeError("the inspection consumer is not running")

    return create_app(
        service="inspect",
        settings=settings,
        title="Loupe inspection workers",
        description="Golden-template inspection workers (a JetStream consumer group).",
        lifespan=lifespan,
        routers=[endpoints.router],
        readiness={
            "object_store": check_bucket,
            "nats": check_nats,
            "tokens": check_tokens,
            "consumer": check_consumer,
        },
    )
