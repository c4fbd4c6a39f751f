"""The gateway routes every API to its owner, stamps request ids, sets security headers,
answers CORS for configured origins only, limits bodies, and serves the API docs."""

import json
import re

import httpx
import pytest

from loupe_stack.stack import Stack
from tests.conftest import auth

pytestmark = pytest.mark.e2e
SERVICES = ("catalog", "images", "backup", "inspect")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_api_is_reachable_with_a_token(
    gateway: httpx.Client, admin_token: str, service: str
) -> None:
    answer = gateway.get(f"/api/services/{service}", headers=auth(admin_token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["service"] == service
    assert body["caller"]["role"] == "admin"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_api_refuses_a_missing_token(gateway: httpx.Client, service: str) -> None:
    answer = gateway.get(f"/api/services/{service}")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["status"] == 401


def test_routes_reach_the_owning_service(gateway: httpx.Client, admin_token: str) -> None:
    schema = gateway.get("/api/schema", headers=auth(admin_token))
    assert schema.status_code == 200
    assert set(schema.json()) >= {"current_revision", "head_revision", "app_version"}


def test_request_id_is_generated_when_absent_and_reaches_the_service(
    gateway: httpx.Client, admin_token: str
) -> None:
    answer = gateway.get("/api/services/images", headers=auth(admin_token))
    ids = answer.headers.get_list("x-request-id")
    assert len(ids) == 1, ids
    assert UUID_RE.match(ids[0])
    # The service saw the same id the gateway made (and logs it).
    assert answer.json()["request_id"] == ids[0]


def test_request_id_sent_by_the_caller_is_kept(gateway: httpx.Client, admin_token: str) -> None:
    answer = gateway.get(
        "/api/services/catalog", headers={**auth(admin_token), "X-Request-Id": "line-7:req-42"}
    )
    assert answer.headers.get_list("x-request-id") == ["line-7:req-42"]
    assert answer.json()["request_id"] == "line-7:req-42"


def test_malformed_request_id_is_replaced(gateway: httpx.Client, admin_token: str) -> None:
    answer = gateway.get(
        "/api/services/catalog", headers={**auth(admin_token), "X-Request-Id": "x" * 300}
    )
    (request_id,) = answer.headers.get_list("x-request-id")
    assert UUID_RE.match(request_id)


def test_gateway_errors_are_problem_documents_with_request_id(gateway: httpx.Client) -> None:
    answer = gateway.get("/api/no-such-thing", headers={"X-Request-Id": "probe-404"})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == 404
    assert body["request_id"] == "probe-404"
    assert answer.headers["x-request-id"] == "probe-404"


@pytest.mark.parametrize("path", ["/api/services/catalog", "/api/no-such-thing", "/healthz"])
def test_security_headers_on_every_answer(
    gateway: httpx.Client, admin_token: str, path: str
) -> None:
    headers = gateway.get(path, headers=auth(admin_token)).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "server" not in headers
    assert "via" not in headers


def test_cors_preflight_for_a_configured_origin(gateway: httpx.Client) -> None:
    answer = gateway.options(
        "/api/programs",
        headers={
            "Origin": "http://frontend.test",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, if-match",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "http://frontend.test"
    assert "PUT" in answer.headers["access-control-allow-methods"]
    assert "If-Match" in answer.headers["access-control-allow-headers"]


def test_cors_preflight_for_another_origin_is_refused(gateway: httpx.Client) -> None:
    answer = gateway.options(
        "/api/programs",
        headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "DELETE"},
    )
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers


def test_cors_headers_only_for_configured_origins(gateway: httpx.Client, admin_token: str) -> None:
    allowed = gateway.get(
        "/api/services/catalog", headers={**auth(admin_token), "Origin": "http://localhost:5173"}
    )
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "X-Request-Id" in allowed.headers["access-control-expose-headers"]
    other = gateway.get(
        "/api/services/catalog", headers={**auth(admin_token), "Origin": "http://evil.test"}
    )
    assert "access-control-allow-origin" not in other.headers
    # An origin that merely contains an allowed one is not allowed.
    sneaky = gateway.get(
        "/api/services/catalog",
        headers={**auth(admin_token), "Origin": "http://frontend.test http://evil.test"},
    )
    assert "access-control-allow-origin" not in sneaky.headers


def test_body_over_the_route_limit_is_refused_with_413(
    gateway: httpx.Client, admin_token: str
) -> None:
    too_big = b"{" + b" " * (3 * 1024 * 1024) + b"}"  # JSON routes accept 2 MB
    answer = gateway.post(
        "/api/services/catalog",
        content=too_big,
        headers={**auth(admin_token), "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 413


def test_larger_bodies_pass_on_routes_that_allow_them(
    gateway: httpx.Client, admin_token: str
) -> None:
    # 3 MB is over the JSON limit but under the images limit: the images service answers
    # (no upload route yet, so 404/405 from the service itself, not 413 from the gateway).
    answer = gateway.post(
        "/api/images",
        content=b"\0" * (3 * 1024 * 1024),
        headers={**auth(admin_token), "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code != 413


def test_docs_of_every_service_are_reachable(gateway: httpx.Client) -> None:
    index = gateway.get("/docs")
    assert index.status_code == 200
    for service in SERVICES:
        assert f"/docs/{service}" in index.text
        page = gateway.get(f"/docs/{service}")
        assert page.status_code == 200
        assert f"/openapi/{service}.json" in page.text
        # Swagger UI's files come from the service, through the gateway: nothing from elsewhere.
        policy = page.headers["content-security-policy"]
        assert "http" not in policy, policy
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {a.rsplit("/", 1)[-1] for a in assets if a.startswith("/")} >= {
            "swagger-ui-bundle.js",
            "swagger-ui.css",
        }, assets
        assert all(a.startswith(("/", "data:")) for a in assets), assets
        for asset in assets:
            if asset.startswith("/"):
                loaded = gateway.get(asset)
                assert loaded.status_code == 200, asset
                assert len(loaded.content) > 10_000, asset
        # The files' folder serves its files only: no way out of it, no listing.
        for outside in (
            "%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
            "..%2f..%2f__init__.py",
            "",
            "nul%00.js",
        ):
            refused = gateway.get(f"/docs/{service}/assets/{outside}")
            assert refused.status_code in (400, 404), (outside, refused.status_code)
        spec = gateway.get(f"/openapi/{service}.json")
        assert spec.status_code == 200
        assert json.loads(spec.text)["paths"]


def test_a_stopped_service_is_a_502_problem(
    platform: Stack, gateway: httpx.Client, admin_token: str
) -> None:
    platform.services["inspect"].stop()
    try:
        answer = gateway.get("/api/services/inspect", headers=auth(admin_token))
        assert answer.status_code == 502
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["request_id"] == answer.headers["x-request-id"]
    finally:
        platform.restart_service("inspect")
    assert gateway.get("/api/services/inspect", headers=auth(admin_token)).status_code == 200
