"""The circuit breaker and the retry backoff, on a clock of the test's own."""

from loupe_line.breaker import BreakerState, CircuitBreaker, full_jitter


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read afresh: the clock moves it


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_after_a_growing_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=1.0, cooldown_max_s=3.0, clock=clock)
    breaker.failure()
    breaker.success()  # a success in between resets the count
    breaker.failure()
    breaker.failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.failure()
    assert state(breaker) is BreakerState.OPEN
    assert breaker.retry_in() == 1.0

    clock.now += 1.0
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.failure()  # the probe failed: open again, for twice as long
    assert (state(breaker), breaker.retry_in()) == (BreakerState.OPEN, 2.0)
    clock.now += 2.0
    breaker.failure()
    assert breaker.retry_in() == 3.0  # capped
    clock.now += 3.0
    breaker.failure()
    assert breaker.retry_in() == 3.0

    breaker.probe_now()  # the link came back
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.success()
    assert (state(breaker), breaker.cooldown_s) == (BreakerState.CLOSED, 1.0)


def test_backoff_is_full_jitter_under_a_cap() -> None:
    delays = [full_jitter(attempt, 0.1, 2.0) for attempt in range(1, 40) for _ in range(20)]
    assert all(0.0 <= d <= 2.0 for d in delays)
    assert max(full_jitter(1, 0.1, 2.0) for _ in range(200)) <= 0.2
    assert len(set(delays)) > 100
