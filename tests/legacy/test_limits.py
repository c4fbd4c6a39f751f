"""The catalog's own limits on an export, on a catalog of the test's own with small limits
(the gateway's limit for this route is 128 MiB: too much to send in a test)."""

import json

import httpx

from tests.catalog.conftest import (  # noqa: F401 (fixtures used here)
    IsolatedCatalog,
    isolated_catalog,
    scratch_database,
)
from tests.conftest import auth
from tests.legacy.helpers import legacy_program


def test_an_export_over_the_limits_is_refused(
    isolated_catalog: IsolatedCatalog,  # noqa: F811 (the fixture imported above)
    admin_token: str,
) -> None:
    process = isolated_catalog.start(
        CATALOG_LEGACY_MAX_BODY_BYTES="4096", CATALOG_LEGACY_MAX_PROGRAMS="3"
    )
    try:
        with httpx.Client(base_url=isolated_catalog.url, headers=auth(admin_token)) as client:
            big = json.dumps([legacy_program(name="x" * 100) for _ in range(20)]).encode()
            assert len(big) > 4096
            answer = client.post("/api/migrations/legacy", content=big)
            assert answer.status_code == 413
            assert answer.headers["content-type"] == "application/problem+json"

            def chunks() -> list[bytes]:
                return [big[i : i + 1024] for i in range(0, len(big), 1024)]

            # Without a Content-Length (chunked), cut off as the limit passes.
            streamed = client.post("/api/migrations/legacy", content=iter(chunks()))
            assert streamed.status_code == 413

            four = json.dumps([legacy_program() for _ in range(4)]).encode()
            answer = client.post("/api/migrations/legacy", content=four)
            assert answer.status_code == 422
            assert "at most 3" in answer.json()["detail"]
            three = json.dumps([legacy_program() for _ in range(3)]).encode()
            answer = client.post("/api/migrations/legacy", content=three)
            assert answer.status_code == 200, answer.text
            assert answer.json()["totals"]["imported"] == 3
            assert client.get("/api/migrations").json()["items"] == []
    finally:
        process.stop()
