"""Who may do what on the backup endpoints, and how often.

Operators create, list, download and verify; restoring and deleting is for admins only (the
role, not only the permission: operators hold `backups:restore` for restore drills' dry runs).
"""

import time
from collections import deque
from collections.abc import Awaitable, Callable

from fastapi import Request

from loupe_shared.kit.auth import Permission, Principal, Role, authenticate_request
from loupe_shared.kit.problems import Problem


class RateLimiter:
    """A sliding window per token: `per_minute` requests that start work (backups, verifies,
    restores, downloads, imports, deletions), ten times as many that only read records."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[tuple[str, bool], deque[float]] = {}

    def check(self, token_id: str, heavy: bool) -> None:
        now = time.monotonic()
        limit = self.per_minute if heavy else 10 * self.per_minute
        window = self._seen.setdefault((token_id, heavy), deque())
        while window and now - window[0] > 60.0:
            window.popleft()
        if len(window) >= limit:
            retry = max(1, int(60.0 - (now - window[0])) + 1)
            raise Problem(
                429,
                f"At most {limit} such backup requests a minute per token; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )
        window.append(now)


def allow(
    permission: Permission, *, admin_only: bool = False, heavy: bool | None = None
) -> Callable[[Request], Awaitable[Principal]]:
    """`heavy` (default: anything but GET) picks the stricter rate limit."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate_request(request)
        limiter: RateLimiter = request.app.state.rate_limiter
        limiter.check(principal.token_id, request.method != "GET" if heavy is None else heavy)
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
