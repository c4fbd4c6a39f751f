"""Tokens and roles on every service: 401 without a valid token, 403 without the permission,
revocation reaching every service within seconds, secrets never logged."""

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from loupe_shared.kit.auth import ROLE_PERMISSIONS, Permission, Role
from loupe_stack.stack import Stack
from tests.conftest import TokenMaker, auth
from tests.support import ROOT, eventually

SERVICES = ("catalog", "images", "backup", "inspect")


def _loupe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loupe_stack", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer loupe_0123456789abcdef_" + "A" * 43],
)
def test_malformed_or_unknown_tokens_are_401(gateway: httpx.Client, header: str) -> None:
    answer = gateway.get("/api/services/catalog", headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_wrong_secret_for_a_real_token_id_is_401(gateway: httpx.Client, admin_token: str) -> None:
    forged = admin_token[:-4] + ("AAAA" if not admin_token.endswith("AAAA") else "BBBB")
    assert gateway.get("/api/services/catalog", headers=auth(forged)).status_code == 401


def test_valid_token_without_the_permission_is_403(platform: Stack, make_token: TokenMaker) -> None:
    viewer = make_token(Role.VIEWER, "viewer-403")
    operator = make_token(Role.OPERATOR, "operator-metrics")
    for service in SERVICES:
        url = f"{platform.service_url(service)}/metrics"
        denied = httpx.get(url, headers=auth(viewer))
        assert denied.status_code == 403, service
        assert denied.json()["required_permission"] == "metrics:read"
        allowed = httpx.get(url, headers=auth(operator))
        assert allowed.status_code == 200, service
        assert "http_requests_total" in allowed.text


def test_health_endpoints_need_no_token(platform: Stack) -> None:
    for service in SERVICES:
        assert httpx.get(f"{platform.service_url(service)}/healthz").status_code == 200
        assert httpx.get(f"{platform.service_url(service)}/readyz").status_code == 200


def test_expired_token_is_401(gateway: httpx.Client, make_token: TokenMaker) -> None:
    expired = make_token(Role.ADMIN, "expired", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert gateway.get("/api/services/images", headers=auth(expired)).status_code == 401


def test_cli_creates_lists_and_revokes_and_revocation_reaches_every_service(
    platform: Stack, cli_env: dict[str, str]
) -> None:
    created = _loupe(cli_env, "tokens", "create", "--name", "line-12", "--role", "line", "--quiet")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    token_id = token.split("_")[1]
    for service in SERVICES:
        answer = httpx.get(
            f"{platform.service_url(service)}/api/services/{service}", headers=auth(token)
        )
        assert answer.status_code == 200, service
        assert answer.json()["caller"]["role"] == "line"

    listed = _loupe(cli_env, "tokens", "list")
    assert token_id in listed.stdout
    assert "line-12" in listed.stdout
    assert token not in listed.stdout  # the secret is never shown again

    revoked = _loupe(cli_env, "tokens", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr

    def refused(url: str) -> Callable[[], bool]:
        return lambda: httpx.get(url, headers=auth(token)).status_code == 401

    for service in SERVICES:
        url = f"{platform.service_url(service)}/api/services/{service}"
        eventually(f"revoked token refused by {service}", refused(url), timeout_s=10)

    assert token_id not in _loupe(cli_env, "tokens", "list").stdout
    assert "revoked" in _loupe(cli_env, "tokens", "list", "--all").stdout
    unknown = _loupe(cli_env, "tokens", "revoke", "ffffffffffffffff")
    assert unknown.returncode == 1
    assert "no token" in unknown.stderr


def test_cli_rejects_an_unknown_role(cli_env: dict[str, str]) -> None:
    done = _loupe(cli_env, "tokens", "create", "--name", "x", "--role", "superuser")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_secrets_never_appear_in_logs(
    platform: Stack, gateway: httpx.Client, admin_token: str
) -> None:
    gateway.get("/api/services/catalog", headers=auth(admin_token))
    gateway.get("/api/services/catalog", headers=auth(admin_token + "x"))
    secrets = [
        admin_token.split("_", 2)[2],
        platform.credentials.pg_password,
        platform.credentials.nats_password,
        platform.credentials.s3_secret_key,
    ]
    logs = list(Path(platform.log_dir).glob("*.log"))
    assert {p.stem for p in logs} >= {"catalog", "images", "backup", "inspect", "gateway"}
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret appears in {log.name}"


def test_readme_role_table_matches_the_code() -> None:
    """The README's role table is what the code enforces."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- roles:start -->")[1].split("<!-- roles:end -->")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    header = [cell.strip() for cell in section.splitlines()[1].strip("|").split("|")]
    roles = [Role(cell) for cell in header[1:]]
    documented: dict[Role, set[Permission]] = {role: set() for role in roles}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        permission = Permission(cells[0].strip("`"))
        for role, mark in zip(roles, cells[1:], strict=True):
            if mark == "✓":
                documented[role].add(permission)
    assert set(roles) == set(Role)
    for role in Role:
        assert documented[role] == set(ROLE_PERMISSIONS[role]), role
