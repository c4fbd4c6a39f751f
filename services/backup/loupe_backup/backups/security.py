"""Who may do what on the backup endpoints, and how often.

Operators create, list, download and verify; restoring and deleting is for admins only (the
role, not only the permission: operators hold `backups:restore` for restore drills' dry runs).
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from loupe_backup.state import app_state
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission, Principal, Role, authenticate_request
from loupe_shared.kit.problems import Problem


def allow(
    permission: Permission, *, admin_only: bool = False, heavy: bool | None = None
) -> Callable[[Request], Awaitable[Principal]]:
    """`heavy` (default: anything but GET) picks the stricter rate limit."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate_request(request)
        app_state(request).rate_limiter.check(
            principal.token_id, request.method != "GET" if heavy is None else heavy
        )
        if permission not in principal.permissions or (admin_only and principal.role != Role.ADMIN):
            needs = "the admin role" if admin_only else f"'{permission}'"
            raise Problem(
                403,
                f"Role '{principal.role}' may not do this (needs {needs}).",
                required_permission=str(permission),
            )
        return principal

    dependency.__name__ = f"allow_{permission.value.replace(':', '_')}"
    return dependency


def acting(
    permission: Permission, *, admin_only: bool = False, heavy: bool | None = None
) -> Callable[..., Awaitable[Actor]]:
    """`allow`, answering the caller as an `Actor` (principal and request id, for audit)."""
    check = allow(permission, admin_only=admin_only, heavy=heavy)

    # The permission check is a dependency of its own, so the OpenAPI document sees it (and
    # lists the 401/403 it answers).
    async def dependency(
        request: Request, principal: Annotated[Principal, Depends(check)]
    ) -> Actor:
        return Actor.of(request, principal)

    dependency.__name__ = f"acting_{permission.value.replace(':', '_')}"
    return dependency
