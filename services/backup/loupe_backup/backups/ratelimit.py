"""How often one token may ask the backup service for work."""

import time
from collections import deque

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
