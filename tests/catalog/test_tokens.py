"""The token API (`/api/tokens`, on the catalog): admins list, create and revoke tokens; the
secret is answered once; revocation reaches every service within the token cache's lifetime;
every change is audited; nobody else may touch it."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from loupe_shared.kit.auth import Role
from loupe_stack.stack import Stack
from tests.conftest import TokenMaker, auth
from tests.support import eventually

SERVICES = ("catalog", "images", "backup", "inspect")


def _audited(gateway: httpx.Client, admin_token: str, action: str, token_id: str) -> bool:
    answer = gateway.get(
        "/api/audit",
        params={"target": f"token:{token_id}", "action": action},
        headers=auth(admin_token),
    )
    return answer.status_code == 200 and len(answer.json()["items"]) == 1


def test_an_admin_creates_lists_and_revokes_a_token_everywhere(
    platform: Stack, gateway: httpx.Client, admin_token: str
) -> None:
    name = f"line-{uuid.uuid4().hex[:6]}"
    expires = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    created = gateway.post(
        "/api/tokens",
        json={"name": name, "role": "line", "expires_at": expires},
        headers=auth(admin_token),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    token, token_id = body["token"], body["id"]
    assert token.startswith(f"loupe_{token_id}_")
    assert body["role"] == "line"
    assert body["status"] == "active"
    assert "secret_sha256" not in body
    for service in SERVICES:
        url = f"{platform.service_url(service)}/api/services/{service}"
        assert httpx.get(url, headers=auth(token)).json()["caller"]["role"] == "line"

    listed = gateway.get("/api/tokens", headers=auth(admin_token))
    assert listed.status_code == 200
    mine = [t for t in listed.json()["items"] if t["id"] == token_id]
    assert mine
    assert mine[0]["name"] == name
    assert mine[0]["expires_at"] is not None
    assert token not in listed.text
    assert "secret" not in listed.text

    revoked = gateway.delete(f"/api/tokens/{token_id}", headers=auth(admin_token))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_at"]
    for service in SERVICES:
        url = f"{platform.service_url(service)}/api/services/{service}"
        eventually(
            f"revoked token refused by {service}",
            lambda url=url: httpx.get(url, headers=auth(token)).status_code == 401,  # type: ignore[misc]
            timeout_s=10,
        )
    active = gateway.get("/api/tokens", headers=auth(admin_token)).json()["items"]
    assert token_id not in {t["id"] for t in active}
    every = gateway.get(
        "/api/tokens", params={"include_revoked": "true"}, headers=auth(admin_token)
    ).json()["items"]
    assert {t["id"]: t["status"] for t in every}[token_id] == "revoked"
    # Revoking again answers the same record and is not audited twice.
    again = gateway.delete(f"/api/tokens/{token_id}", headers=auth(admin_token))
    assert again.status_code == 200
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    for action in ("tokens.create", "tokens.revoke"):
        eventually(
            f"{action} audited once",
            lambda action=action: _audited(gateway, admin_token, action, token_id),  # type: ignore[misc]
        )


def test_a_token_cannot_revoke_itself(gateway: httpx.Client, make_token: TokenMaker) -> None:
    admin = make_token(Role.ADMIN, "self-revoker")
    token_id = admin.split("_")[1]
    answer = gateway.delete(f"/api/tokens/{token_id}", headers=auth(admin))
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert gateway.get("/api/tokens", headers=auth(admin)).status_code == 200


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN])
def test_only_admins_manage_tokens(
    role: Role, gateway: httpx.Client, make_token: TokenMaker, admin_token: str
) -> None:
    token = make_token(role, f"not-admin-{role}")
    headers = auth(token)
    assert gateway.get("/api/tokens", headers=headers).status_code == 403
    made = gateway.post("/api/tokens", json={"name": "x", "role": "admin"}, headers=headers)
    assert made.status_code == 403
    victim = admin_token.split("_")[1]
    assert gateway.delete(f"/api/tokens/{victim}", headers=headers).status_code == 403
    assert gateway.get("/api/tokens").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "role": "line"}, "name"),
        ({"name": "a\x00b", "role": "line"}, "name"),
        ({"name": "x" * 101, "role": "line"}, "name"),
        ({"name": "x", "role": "superuser"}, "role"),
        ({"name": "x", "role": "line", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "role": "line", "expires_at": "9999-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "role": "line", "secret_sha256": "0" * 64}, "secret_sha256"),
        ({"role": "line"}, "name"),
    ],
)
def test_a_bad_create_is_a_422_naming_the_field(
    body: dict[str, object], field: str, gateway: httpx.Client, admin_token: str
) -> None:
    answer = gateway.post("/api/tokens", json=body, headers=auth(admin_token))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.text


@pytest.mark.parametrize("token_id", ["ffffffffffffffff", "FFFFFFFFFFFFFFFF", "abc", "%00"])
def test_revoking_an_unknown_or_malformed_id_is_a_4xx(
    token_id: str, gateway: httpx.Client, admin_token: str
) -> None:
    answer = gateway.delete(f"/api/tokens/{token_id}", headers=auth(admin_token))
    assert answer.status_code == (404 if token_id == "ffffffffffffffff" else 422), answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
