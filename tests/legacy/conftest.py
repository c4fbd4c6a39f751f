import json
from typing import Any

import httpx
import pytest

from loupe_shared.kit.auth import Role
from tests.conftest import TokenMaker, auth


@pytest.fixture(scope="module")
def engineer(make_token: TokenMaker) -> dict[str, str]:
    return auth(make_token(Role.ENGINEER, "legacy-migrator"))


class Migrator:
    """`POST /api/migrations/legacy` through the gateway."""

    def __init__(self, gateway: httpx.Client, headers: dict[str, str]) -> None:
        self.gateway = gateway
        self.headers = headers

    def post(self, body: bytes | Any, *, dry_run: bool) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.gateway.post(
            "/api/migrations/legacy",
            params={"dry_run": str(dry_run).lower()},
            content=content,
            headers={**self.headers, "Content-Type": "application/json"},
            timeout=120,
        )

    def run(self, body: bytes | Any, *, dry_run: bool) -> dict[str, Any]:
        answer = self.post(body, dry_run=dry_run)
        assert answer.status_code == (200 if dry_run else 201), answer.text
        report: dict[str, Any] = answer.json()
        return report


@pytest.fixture
def migrator(gateway: httpx.Client, engineer: dict[str, str]) -> Migrator:
    return Migrator(gateway, engineer)
