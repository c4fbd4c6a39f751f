"""The error answers in every service's OpenAPI: what each route may answer besides success,
derived from what the route depends on, all as `application/problem+json`.

FastAPI documents only 200 and its own 422 shape; client generators then know nothing of the
problems the kit answers (401/403 from auth, 503 during maintenance, 412/428 with If-Match).
"""

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from loupe_shared.kit.auth import authenticate_request
from loupe_shared.kit.problems import (
    _TITLES,
    PROBLEM_JSON,
    PROBLEM_SCHEMA,
    VALIDATION_PROBLEM_SCHEMA,
)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WHY = {
    400: "The request is malformed.",
    401: "No valid bearer token (missing, unknown, expired or revoked).",
    403: "The token's role lacks the permission this route needs.",
    404: "Nothing answers at this path, or what it names does not exist.",
    405: "This path does not take this method.",
    409: "The request conflicts with the current state.",
    412: "If-Match does not name the current ETag: someone changed it meanwhile.",
    413: "The body is larger than this route accepts (answered by the gateway).",
    415: "The body's type is not one this route takes.",
    422: "A field failed validation; `errors` names each one.",
    428: "This change needs an If-Match header with the ETag last read.",
    429: "Too many requests; retry after the time given.",
    503: "A dependency is unavailable, or a restore is running (writes are refused).",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def binary(status: int, description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """The `responses` entry of a route that answers bytes rather than JSON (an image, an
    archive, metrics text), so its OpenAPI says which media types it sends."""
    schema = {"type": "string", "format": "binary"}
    return {
        status: {
            "description": description,
            "content": {media_type: {"schema": schema} for media_type in media_types},
        }
    }


_NO_CODE = (lambda: None).__code__


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    """The route's dependant and every dependency's, at any depth."""
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def statuses_of(route: Any, *, maintenance: bool) -> set[int]:
    """The error statuses `route` can answer, from its dependencies, method and parameters."""
    found = {400, 404, 405}  # any path: a malformed request, an unknown path or method
    calls = list(_calls(route.dependant))
    # A dependency authenticates when it is the kit's, or calls it (`require`, a service's
    # own permission check); it can answer 403 when it looks at the permissions.
    names = {name for call in calls for name in getattr(call, "__code__", _NO_CODE).co_names}
    if "authenticate_request" in names or authenticate_request in calls:
        found |= {401, 503}  # 503: tokens cannot be checked
    if "permissions" in names:
        found.add(403)
    if "rate_limiter" in names:
        found.add(429)
    unsafe = bool(route.methods - _SAFE_METHODS)
    if unsafe and maintenance and route.path.startswith("/api/"):
        found.add(503)
    if unsafe and route.path.startswith("/api/"):
        found |= {409, 422, 503}  # Idempotency-Key: still running, reused, cannot be checked
    # Parameters a dependency declares are validated like the route's own.
    every = list(_dependants(route.dependant))
    headers = {param.alias.lower() for d in every for param in d.header_params}
    if "if-match" in headers:
        found |= {412, 428}
    if any(d.body_params for d in every) or unsafe:
        found |= {413, 415, 422}
    if any(d.query_params or d.path_params for d in every) or headers:
        found.add(422)
    for declared in route.responses:
        if str(declared).isdigit() and int(declared) >= 400:
            found.add(int(declared))
    return found


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "A key of the caller's own (1 to 255 visible ASCII characters): the same key with the "
        "same request within 24 h gets the first answer again (`Idempotent-Replayed: true`) "
        "and runs nothing twice; with another request it is a 422, while the first still "
        "runs a 409."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "ETags of the answer the caller holds: a match is answered 304, no body.",
    "schema": {"type": "string"},
}


def _document_caching(method: str, operation: dict[str, Any]) -> None:
    """The kit's middleware on every API route: idempotency keys on writes, ETags and
    conditional reads on JSON GETs (`kit.idempotency`, `kit.etags`)."""
    parameters = operation.setdefault("parameters", [])
    names = {(p.get("in"), p.get("name", "").lower()) for p in parameters}
    responses = operation["responses"]
    if method in _SAFE_METHODS:
        ok = responses.get("200", {}).get("content", {})
        if method == "GET" and "application/json" in ok:
            if ("header", "if-none-match") not in names:
                parameters.append(_IF_NONE_MATCH)
            responses.setdefault("304", {"description": "Not modified: If-None-Match matched"})
            responses["200"].setdefault("headers", {})["ETag"] = {
                "description": "The answer's entity tag (weak unless the resource has its own)",
                "schema": {"type": "string"},
            }
        return
    if ("header", "idempotency-key") not in names:
        parameters.append(_IDEMPOTENCY_KEY)


def _problem_response(status: int, schema: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _WHY.get(status, _TITLES.get(status, "Error")),
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if status in (429, 503):
        answer["headers"] = _RETRY_AFTER
    return answer


def document_errors(app: FastAPI, *, maintenance: bool) -> None:
    """Make `app.openapi()` list every route's error answers as problem documents."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
        for context in iter_route_contexts(app.routes):
            # A route as its router includes it: its full path and the router's dependencies.
            route: Any = context
            if not isinstance(context.original_route, APIRoute) or not route.include_in_schema:
                continue
            operations = document.get("paths", {}).get(route.path_format, {})
            for method in route.methods:
                operation = operations.get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for status in sorted(statuses_of(route, maintenance=maintenance)):
                    schema = "ValidationProblem" if status == 422 else "Problem"
                    existing = responses.get(str(status))
                    if existing is None or status == 422:
                        responses[str(status)] = _problem_response(status, schema)
                    else:  # a route's own description stays; the body is a problem document
                        existing["content"] = _problem_response(status, schema)["content"]
                if route.path_format.startswith("/api/"):
                    _document_caching(method, operation)
                responses["default"] = {
                    "description": "Any other error, as a problem document.",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
