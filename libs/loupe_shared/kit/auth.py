"""Bearer tokens with roles, kept in a NATS key-value bucket every service reads.

A token is `loupe_<id>_<secret>`; only the SHA-256 of the secret is stored. Services cache a
looked-up token for `cache_ttl_s` seconds, so a revoked token stops working on every service
within that time. When the bucket cannot be reached, a token seen recently keeps working for
`stale_grace_s` so reads survive a short NATS outage; an unknown token is then refused with 503.
"""

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import bucket_keys
from loupe_shared.kit.problems import Problem
from loupe_shared.kit.state import kit_state

_log = get_logger("loupe.auth")
_TOKEN_RE = re.compile(r"^loupe_([0-9a-f]{16})_([A-Za-z0-9_\-]{32,64})$")


class Role(StrEnum):
    VIEWER = "viewer"
    ENGINEER = "engineer"
    LINE = "line"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    PROGRAMS_READ = "programs:read"
    PROGRAMS_WRITE = "programs:write"
    IMAGES_READ = "images:read"
    IMAGES_WRITE = "images:write"
    IMAGES_DELETE = "images:delete"
    IMAGES_FORCE_DELETE = "images:force-delete"
    RESULTS_READ = "results:read"
    RESULTS_WRITE = "results:write"
    INSPECTIONS_REQUEST = "inspections:request"
    AUDIT_READ = "audit:read"
    BACKUPS_READ = "backups:read"
    BACKUPS_WRITE = "backups:write"
    BACKUPS_RESTORE = "backups:restore"
    MIGRATIONS_RUN = "migrations:run"
    INTEGRITY_READ = "integrity:read"
    # Run the garbage collector and the integrity scrub on demand.
    STORAGE_MANAGE = "storage:manage"
    RETENTION_MANAGE = "retention:manage"
    METRICS_READ = "metrics:read"
    TOKENS_MANAGE = "tokens:manage"


P = Permission
_VIEW = {P.PROGRAMS_READ, P.IMAGES_READ, P.RESULTS_READ}
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_VIEW),
    Role.ENGINEER: frozenset(
        _VIEW
        | {P.PROGRAMS_WRITE, P.IMAGES_WRITE, P.IMAGES_DELETE, P.INSPECTIONS_REQUEST}
        | {P.MIGRATIONS_RUN}
    ),
    Role.LINE: frozenset(
        {P.PROGRAMS_READ, P.IMAGES_READ, P.IMAGES_WRITE, P.RESULTS_WRITE, P.INSPECTIONS_REQUEST}
    ),
    Role.OPERATOR: frozenset(
        _VIEW
        | {P.AUDIT_READ, P.BACKUPS_READ, P.BACKUPS_WRITE, P.BACKUPS_RESTORE}
        | {P.INTEGRITY_READ, P.STORAGE_MANAGE, P.RETENTION_MANAGE, P.METRICS_READ}
    ),
    Role.ADMIN: frozenset(Permission),
}


class TokenRecord(BaseModel):
    id: str
    name: str
    role: Role
    secret_sha256: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        now = datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: Role

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh (token id, secret, full token)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"loupe_{token_id}_{secret}"


class TokenStoreUnavailable(Exception):
    pass


class TokenStore:
    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        *,
        cache_ttl_s: float = 2.0,
        stale_grace_s: float = 300.0,
    ) -> None:
        self._js = js
        self._bucket = bucket
        self._kv: KeyValue | None = None
        self._cache: dict[str, tuple[float, TokenRecord | None]] = {}
        self._cache_ttl_s = cache_ttl_s
        self._stale_grace_s = stale_grace_s
        self._lock = asyncio.Lock()

    @property
    def bucket(self) -> str:
        """The key-value bucket the tokens live in (its namespace prefix names the others)."""
        return self._bucket

    async def ensure_bucket(self, replicas: int = 1) -> None:
        try:
            self._kv = await self._js.key_value(self._bucket)
        except BucketNotFoundError:
            self._kv = await self._js.create_key_value(
                bucket=self._bucket, history=5, description="Loupe API tokens", replicas=replicas
            )

    async def check(self) -> None:
        """Raise unless the token bucket can be read."""
        await self._js.key_value(self._bucket)

    async def _bucket_kv(self) -> KeyValue:
        if self._kv is None:
            async with self._lock:
                if self._kv is None:
                    self._kv = await self._js.key_value(self._bucket)
        return self._kv

    async def create(
        self,
        name: str,
        role: Role,
        created_by: str,
        *,
        expires_at: datetime | None = None,
        token: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """Store a new token and answer it; the full token is never stored or shown again.
        `token` lets an installer register a token it generated itself."""
        if token is None:
            token_id, secret, token = new_token()
        else:
            match = _TOKEN_RE.match(token)
            if match is None:
                raise ValueError("not a Loupe token")
            token_id, secret = match.groups()
        record = TokenRecord(
            id=token_id,
            name=name,
            role=role,
            secret_sha256=_hash(secret),
            created_at=datetime.now(UTC),
            created_by=created_by,
            expires_at=expires_at,
        )
        kv = await self._bucket_kv()
        await kv.create(token_id, record.model_dump_json().encode())
        return record, token

    async def get(self, token_id: str) -> TokenRecord | None:
        kv = await self._bucket_kv()
        try:
            entry = await kv.get(token_id)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return TokenRecord.model_validate(json.loads(entry.value))

    async def list(self) -> list[TokenRecord]:
        records = [await self.get(key) for key in await bucket_keys(self._js, self._bucket)]
        return sorted((r for r in records if r is not None), key=lambda r: r.created_at)

    async def revoke(self, token_id: str) -> TokenRecord | None:
        kv = await self._bucket_kv()
        record = await self.get(token_id)
        if record is None:
            return None
        if record.revoked_at is None:
            record.revoked_at = datetime.now(UTC)
            await kv.put(token_id, record.model_dump_json().encode())
        self._cache.pop(token_id, None)
        return record

    async def restore(self, record: TokenRecord) -> bool:
        """Put back a token record from a backup. A token revoked here stays revoked (a
        backup older than the revocation must not bring it back); answer whether it was
        written."""
        kv = await self._bucket_kv()
        current = await self.get(record.id)
        if current is not None and current.revoked_at is not None:
            return False
        await kv.put(record.id, record.model_dump_json().encode())
        self._cache.pop(record.id, None)
        return True

    async def authenticate(self, token: str) -> Principal | None:
        match = _TOKEN_RE.match(token)
        if match is None:
            return None
        token_id, secret = match.groups()
        record = await self._lookup(token_id)
        if record is None or not record.active:
            return None
        if not hmac.compare_digest(record.secret_sha256, _hash(secret)):
            return None
        return Principal(token_id=record.id, name=record.name, role=record.role)

    async def _lookup(self, token_id: str) -> TokenRecord | None:
        now = time.monotonic()
        cached = self._cache.get(token_id)
        if cached is not None and now - cached[0] < self._cache_ttl_s:
            return cached[1]
        try:
            async with asyncio.timeout(2.0):
                record = await self.get(token_id)
        except Exception as exc:
            if cached is not None and now - cached[0] < self._stale_grace_s:
                _log.warning("auth.store_unreachable", token_id=token_id, error=str(exc))
                return cached[1]
            raise TokenStoreUnavailable(str(exc)) from exc
        self._cache[token_id] = (now, record)
        return record


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="loupe"'}


async def authenticate_request(request: Request) -> Principal:
    token = _bearer(request)
    if token is None:
        raise Problem(401, "This endpoint needs a bearer token.", headers=_CHALLENGE)
    try:
        principal = await kit_state(request.app).connected().tokens.authenticate(token)
    except TokenStoreUnavailable:
        raise Problem(503, "Tokens cannot be checked right now; try again shortly.") from None
    if principal is None:
        raise Problem(
            401,
            "The token is unknown, expired or revoked.",
            headers={"WWW-Authenticate": 'Bearer realm="loupe", error="invalid_token"'},
        )
    request.state.principal = principal
    return principal


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that lets the request through only for a token whose role grants
    `permission`: 401 without a valid token, 403 with a valid token lacking the permission."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate_request(request)
        if permission not in principal.permissions:
            raise Problem(
                403,
                f"Role '{principal.role}' may not do this (needs '{permission}').",
                required_permission=str(permission),
            )
        return principal

    dependency.__name__ = f"require_{permission.value.replace(':', '_').replace('-', '_')}"
    return dependency


CurrentPrincipal = Annotated[Principal, Depends(authenticate_request)]
