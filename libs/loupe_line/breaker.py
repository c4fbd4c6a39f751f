"""A circuit breaker and the retry backoff, so a dead server costs nothing per result."""

import enum
import random
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Closed until `threshold` consecutive failures, then open for a cooldown; after it, one
    probe is let through (half-open). A failed probe reopens the breaker with twice the
    cooldown, up to `cooldown_max_s`; a success closes it and resets the cooldown."""

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        cooldown_max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.cooldown_max_s = max(cooldown_max_s, cooldown_s)
        self._clock = clock
        self._failures = 0
        self._cooldown_s = cooldown_s
        self._opened_at: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self._cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def cooldown_s(self) -> float:
        return self._cooldown_s

    def retry_in(self) -> float:
        """Seconds until the next attempt is allowed; 0 when closed or half-open."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown_s - self._clock())

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._cooldown_s = self.base_cooldown_s

    def failure(self) -> None:
        self._failures += 1
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._cooldown_s = min(self._cooldown_s * 2, self.cooldown_max_s)
            self._opened_at = self._clock()
        elif state is BreakerState.CLOSED and self._failures >= self.threshold:
            self._opened_at = self._clock()

    def probe_now(self) -> None:
        """Let the next attempt through at once (the connection just came back)."""
        if self._opened_at is not None:
            self._opened_at = self._clock() - self._cooldown_s


def full_jitter(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap_s, base_s * 2 ** min(attempt, 32)))
