"""The application factory and runner every HTTP service uses."""

import asyncio
import gc
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.resources import files
from pathlib import Path

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.responses import Response

from loupe_shared import __version__
from loupe_shared.kit.auth import CurrentPrincipal, Permission, Role, require
from loupe_shared.kit.coalesce import CoalescingHttpToolsProtocol
from loupe_shared.kit.etags import ETagMiddleware
from loupe_shared.kit.health import Check, health_router
from loupe_shared.kit.idempotency import IdempotencyMiddleware
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.maintenance import MaintenanceGuard, MaintenanceMiddleware
from loupe_shared.kit.openapi import binary, document_errors
from loupe_shared.kit.problems import install_problem_handlers
from loupe_shared.kit.requests import HttpMetrics, RequestContextMiddleware, request_id
from loupe_shared.kit.scrape import Scrape
from loupe_shared.kit.scrape import readiness as readiness_measure
from loupe_shared.kit.settings import ServiceSettings
from loupe_shared.kit.state import KitState, install, kit_state
from loupe_shared.kit.summary import Sampler, ServiceSummary, summary
from loupe_shared.kit.tasks import cancel_and_wait

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class Caller(BaseModel):
    """The token a request came with."""

    token_id: str
    name: str
    role: Role
    permissions: list[Permission]


class About(BaseModel):
    """Which service and version answered, the request's id, and who asked."""

    service: str
    version: str
    request_id: str | None
    caller: Caller


# Swagger UI's script and style, from a pinned wheel: the docs pages load nothing from
# elsewhere (a factory network may reach no CDN; the gateway's policy allows only 'self').
SWAGGER_UI = Path(str(files("fastapi_offline") / "static"))


def _api_docs(app: FastAPI, service: str, title: str) -> None:
    """`/docs/<service>`: Swagger UI on the service's OpenAPI, its files under
    `/docs/<service>/assets/`."""
    assets = f"/docs/{service}/assets"
    app.mount(assets, StaticFiles(directory=SWAGGER_UI), name="docs-assets")

    @app.get(f"/docs/{service}", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"/openapi/{service}.json",
            title=f"{title} — API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url="data:,",
        )


def create_app(
    *,
    service: str,
    title: str,
    description: str,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    readiness: dict[str, Check],
    settings: ServiceSettings,
    registry: CollectorRegistry | None = None,
    maintenance_guard: bool = True,
) -> FastAPI:
    """A FastAPI app with problem+json errors, request ids, metrics, health and docs at
    `/docs/<service>` (the gateway routes that path to the service).

    `maintenance_guard` puts the app behind the restore fence (writes answered 503 while a
    restore runs, background writers held back, heartbeats and acknowledgements); the service
    that runs restores passes False."""
    registry = registry or CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    sampler = Sampler(http_metrics)

    @asynccontextmanager
    async def sampled(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app):
            task = asyncio.create_task(sampler.run(), name="summary-sampler")
            try:
                yield
            finally:
                await cancel_and_wait([task])

    app = FastAPI(
        title=title,
        description=description,
        version=__version__,
        lifespan=sampled,
        docs_url=None,  # below: the same page with Swagger UI's files served from here
        redoc_url=None,
        openapi_url=f"/openapi/{service}.json",
        # Metrics are Prometheus's (`/metrics`) and no OpenTelemetry exporter is set up, so
        # FastAPI's own instrumentation is off rather than asked on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # The service's routes come before the kit's (docs, health, metrics, about): a request is
    # matched against the routes in order, each one tried costs a few microseconds, and nearly
    # every request is for the service's own. (No path of the one is a path of the other.)
    for router in routers:
        app.include_router(router)
    _api_docs(app, service, title)
    install(app, KitState(service=service, registry=registry))
    # Innermost first: a write's idempotency key is claimed only once the restore fence let
    # it through; ETags are added to what the routes answered.
    app.add_middleware(
        IdempotencyMiddleware, crash_before_keep=settings.idempotency_crash_before_keep
    )
    app.add_middleware(ETagMiddleware)
    if maintenance_guard:
        app.add_middleware(
            MaintenanceMiddleware, guard=MaintenanceGuard(poll_s=settings.maintenance_poll_s)
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=http_metrics,
        body_idle_timeout_s=settings.body_idle_timeout_s,
        body_timeout_s=settings.body_timeout_s,
    )
    install_problem_handlers(app)
    app.include_router(health_router(readiness))
    scrape = Scrape.of(registry)
    scrape.add("readiness", readiness_measure(readiness, registry))

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (needs metrics:read)",
        response_class=Response,
        responses=binary(200, "The text exposition format", CONTENT_TYPE_LATEST),
        dependencies=[Depends(require(Permission.METRICS_READ))],
    )
    async def metrics(request: Request) -> Response:
        await scrape.run(request)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        f"/api/services/{service}",
        tags=["service"],
        response_model=About,
        summary="Who answers, and who asks",
    )
    async def about(request: Request, principal: CurrentPrincipal) -> About:
        return About(
            service=service,
            version=__version__,
            request_id=request_id(request),
            caller=Caller(
                token_id=principal.token_id,
                name=principal.name,
                role=principal.role,
                permissions=sorted(principal.permissions),
            ),
        )

    @app.get(
        f"/api/services/{service}/summary",
        tags=["service"],
        response_model=ServiceSummary,
        summary="Request rate, 5xx ratio and latency of the last 5 minutes; storage figures",
        description=(
            "Figures of the replica that answers, from its own metrics (no Prometheus "
            "needed): requests answered over the last 5 minutes (probes, `/metrics` and "
            "`/api/services/...` left out), their rate, the share answered with a 5xx, and "
            "p50/p95/p99 estimated from `http_request_duration_seconds` buckets. `storage` "
            "holds what this service measures of the image store: the catalog its stored "
            "bytes by kind, the images service the store's capacity and free space."
        ),
    )
    async def service_summary(request: Request, _: CurrentPrincipal) -> ServiceSummary:
        return await summary(request, service, sampler, registry)

    document_errors(app, maintenance=maintenance_guard)
    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run on uvicorn; SIGTERM or SIGINT drains in-flight requests, then stops."""
    # Objects alive after start-up are never garbage; moving them out of the collector's
    # view, and collecting young objects less often, shortens the latency tail.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        http=CoalescingHttpToolsProtocol,
        server_header=False,
        proxy_headers=True,
        access_log=False,  # RequestContextMiddleware writes the access lines
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )
    _DrainingServer(config, kit_state(app)).run()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app (`KitState.on_drain`) when it begins to shut down."""

    def __init__(self, config: uvicorn.Config, kit: KitState) -> None:
        super().__init__(config)
        self.kit = kit

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for hook in self.kit.on_drain:
            try:
                hook()
            except Exception as exc:  # one hook's failure must not keep the server up
                get_logger().warning("app.drain_hook_failed", error=repr(exc))
        await super().shutdown(sockets)
