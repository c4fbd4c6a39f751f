"""A request is matched against an app's routes in order, and each route tried costs a few
microseconds: the service's own routes come before the kit's, and the images service's
thumbnail GET (its most frequent request) is the first of its router."""

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, _IncludedRouter
from starlette.routing import Route

from loupe_shared.kit.app import create_app
from loupe_shared.kit.settings import ServiceSettings
from loupe_stack.config import SERVICES


def _build(service: str) -> FastAPI:
    """The service's app as its `__main__` makes it (`build(<Service>Settings())`)."""
    app = importlib.import_module(f"loupe_{service}.app")
    settings = getattr(
        importlib.import_module(f"loupe_{service}.settings"), f"{service.title()}Settings"
    )
    built: FastAPI = app.build(settings())
    return built


def _is_kit_route(route: object, service: str) -> bool:
    path = getattr(route, "path", "")
    if isinstance(route, _IncludedRouter):
        return not route.original_router.prefix  # the health router has no prefix
    return (
        path.startswith(("/docs/", "/healthz", "/readyz", "/metrics"))
        or path.startswith(f"/api/services/{service}")
        or path == f"/openapi/{service}.json"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_routes_are_tried_before_the_kit_routes(service: str) -> None:
    routes = _build(service).router.routes
    # FastAPI adds the OpenAPI document's route when the app is made, before anything else:
    # one plain regular expression.
    assert isinstance(routes[0], Route)
    assert routes[0].path == f"/openapi/{service}.json"
    kinds = [_is_kit_route(route, service) for route in routes[1:]]
    # The service's routes, then the kit's, and nothing of the service's after the kit's.
    assert kinds == sorted(kinds), [
        getattr(r, "path", None) or getattr(getattr(r, "original_router", None), "prefix", "")
        for r in routes
    ]
    assert kinds[0] is False
    assert kinds[-1] is True


def test_the_thumbnail_get_is_the_first_route_of_the_images_router() -> None:
    routes = _build("images").router.routes
    images = next(
        r
        for r in routes
        if isinstance(r, _IncludedRouter) and r.original_router.prefix == "/api/images"
    )
    assert routes.index(images) == 1
    first = images.original_router.routes[0]
    assert isinstance(first, APIRoute)
    assert (first.path, first.methods) == ("/api/images/{sha256}/thumbnail", {"GET"})


def test_a_route_the_service_adds_is_found_before_the_kits() -> None:
    """The order is the factory's doing, not the services' modules'."""
    router = APIRouter(prefix="/api/things")

    @router.get("/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    app = create_app(
        service="things",
        title="t",
        description="d",
        lifespan=_no_lifespan,
        routers=[router],
        readiness={},
        settings=ServiceSettings(),
    )
    assert [getattr(r, "path", None) for r in app.router.routes[:1]] == ["/openapi/things.json"]
    assert isinstance(app.router.routes[1], _IncludedRouter)
    assert app.router.routes[1].original_router is router


@asynccontextmanager
async def _no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
