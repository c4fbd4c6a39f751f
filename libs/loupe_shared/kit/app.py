"""The application factory and runner every HTTP service uses."""

import gc
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

from loupe_shared import __version__
from loupe_shared.kit.auth import CurrentPrincipal, Permission, require
from loupe_shared.kit.health import Check, health_router
from loupe_shared.kit.maintenance import MaintenanceGuard, MaintenanceMiddleware
from loupe_shared.kit.openapi import document_errors
from loupe_shared.kit.problems import install_problem_handlers
from loupe_shared.kit.requests import HttpMetrics, RequestContextMiddleware
from loupe_shared.kit.settings import ServiceSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    *,
    service: str,
    title: str,
    description: str,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    readiness: dict[str, Check],
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """A FastAPI app with problem+json errors, request ids, metrics, health and docs at
    `/docs/<service>` (the gateway routes that path to the service)."""
    registry = registry or CollectorRegistry()
    app = FastAPI(
        title=title,
        description=description,
        version=__version__,
        lifespan=lifespan,
        docs_url=f"/docs/{service}",
        redoc_url=None,
        openapi_url=f"/openapi/{service}.json",
    )
    app.state.service = service
    app.state.registry = registry
    if service != "backup":  # the service that restores is the one exempt from maintenance
        app.add_middleware(MaintenanceMiddleware, guard=MaintenanceGuard())
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(registry))
    install_problem_handlers(app)
    app.include_router(health_router(readiness))

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (needs metrics:read)",
        dependencies=[Depends(require(Permission.METRICS_READ))],
    )
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"/api/services/{service}", tags=["service"], summary="Who answers, and who asks")
    async def about(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
        return {
            "service": service,
            "version": __version__,
            "request_id": request.scope["state"]["request_id"],
            "caller": {
                "token_id": principal.token_id,
                "name": principal.name,
                "role": principal.role,
                "permissions": sorted(principal.permissions),
            },
        }

    for router in routers:
        app.include_router(router)
    document_errors(app, maintenance=service != "backup")
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
        server_header=False,
        proxy_headers=True,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )
    uvicorn.Server(config).run()
