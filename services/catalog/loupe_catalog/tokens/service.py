"""Managing API tokens over HTTP, as `loupe tokens` does from the command line: the records
live in the NATS key-value bucket every service reads (`kit/auth.py`); each change is audited
through the `audit.recorded` stream the catalog appends to its log."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import Error as JetStreamError

from loupe_catalog.tokens.schemas import CreatedToken, Token, TokenCreate
from loupe_shared.kit.audit import Actor, audit_actor
from loupe_shared.kit.auth import TokenStore
from loupe_shared.kit.problems import Problem


@asynccontextmanager
async def _bucket() -> AsyncIterator[None]:
    """The token bucket (or the audit stream) unreachable is a 503 to retry, never a 500."""
    try:
        yield
    except (NatsError, JetStreamError, TimeoutError) as exc:
        raise Problem(
            503,
            "The token store cannot be reached right now; try again shortly.",
            headers={"Retry-After": "2"},
            reason=str(exc)[:200],
        ) from None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


async def list_tokens(store: TokenStore, *, include_revoked: bool) -> list[Token]:
    async with _bucket():
        records = await store.list()
    return [Token.of(r) for r in records if include_revoked or r.revoked_at is None]


async def create(
    store: TokenStore, js: JetStreamContext, namespace: str, actor: Actor, body: TokenCreate
) -> CreatedToken:
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise Problem(
            422,
            "body:expires_at: must be in the future.",
            errors=[{"field": "body:expires_at", "message": "must be in the future"}],
        )
    details = {"name": body.name, "role": str(body.role), "expires_at": _iso(body.expires_at)}
    async with _bucket():
        record, token = await store.create(
            body.name, body.role, actor.principal.name, expires_at=body.expires_at
        )
        await audit_actor(
            js,
            actor,
            action="tokens.create",
            target=f"token:{record.id}",
            namespace=namespace,
            details=details,
        )
    return CreatedToken(**Token.of(record).model_dump(), token=token)


async def revoke(
    store: TokenStore, js: JetStreamContext, namespace: str, actor: Actor, token_id: str
) -> Token:
    """Revoke a token; every service refuses it within its token cache's lifetime. A token
    cannot revoke itself over HTTP: the caller would lose its session half-way through, and a
    console left without a working token is a lock-out (another admin token, or the CLI,
    revokes it). Revoking a revoked token answers it again, audited once."""
    if token_id == actor.principal.token_id:
        raise Problem(
            409,
            "A token cannot revoke itself; revoke it with another admin token or with "
            "`loupe tokens revoke`.",
        )
    async with _bucket():
        found = await store.get(token_id)
        record = await store.revoke(token_id) if found is not None else None
        if found is None or record is None:
            raise Problem(404, f"No token {token_id}.")
        if found.revoked_at is None:
            await audit_actor(
                js,
                actor,
                action="tokens.revoke",
                target=f"token:{record.id}",
                namespace=namespace,
                details={"name": record.name, "role": str(record.role)},
            )
    return Token.of(record)
