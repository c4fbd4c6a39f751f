"""Figures measured when Prometheus scrapes `/metrics` instead of kept current as things
happen: readiness per check, queue depths, stored bytes. A service adds its measurements to
its registry's `Scrape`; `/metrics` runs them all at once, each within a bounded time, and
then answers. A measurement that fails or runs out of time leaves its gauges unchanged and is
counted in `metrics_scrape_failures_total{measure}`."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from weakref import WeakKeyDictionary

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge

from loupe_shared.kit.health import Check, run_checks
from loupe_shared.kit.logging import get_logger

_log = get_logger("loupe.metrics")

Measure = Callable[[Request], Awaitable[None]]

# Below Prometheus' default scrape timeout (10 s): a slow measurement costs its own figures,
# never the whole scrape.
MEASURE_TIMEOUT_S = 5.0


class Scrape:
    """The measurements of one metrics registry; `Scrape.of(registry)` wherever a service
    adds one."""

    _by_registry: "WeakKeyDictionary[CollectorRegistry, Scrape]" = WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.measures: dict[str, Measure] = {}
        self.failures = Counter(
            "metrics_scrape_failures_total",
            "Scrape-time measurements that failed or ran out of time, by measurement",
            ["measure"],
            registry=registry,
        )
        Scrape._by_registry[registry] = self

    @classmethod
    def of(cls, registry: CollectorRegistry) -> "Scrape":
        found = cls._by_registry.get(registry)
        return found if found is not None else cls(registry)

    def add(self, name: str, measure: Measure) -> None:
        self.measures[name] = measure
        self.failures.labels(name)

    async def run(
        self,
        request: Request,
        timeout_s: float = MEASURE_TIMEOUT_S,
        *,
        only: Sequence[str] | None = None,
    ) -> None:
        """Run every measurement, or those named in `only`."""

        async def one(name: str, measure: Measure) -> None:
            try:
                async with asyncio.timeout(timeout_s):
                    await measure(request)
            except Exception as exc:
                self.failures.labels(name).inc()
                _log.warning("metrics.measure_failed", measure=name, error=str(exc) or repr(exc))

        chosen = self.measures if only is None else {n: self.measures[n] for n in only}
        await asyncio.gather(*(one(n, m) for n, m in chosen.items()))


def at_most_every(interval_s: float, measure: Measure) -> Measure:
    """`measure`, run again only once `interval_s` passed since it last succeeded: for
    figures whose query costs more than a scrape interval can pay for every time."""
    last = -float("inf")
    lock = asyncio.Lock()

    async def throttled(request: Request) -> None:
        nonlocal last
        async with lock:
            if time.monotonic() - last < interval_s:
                return
            await measure(request)
            last = time.monotonic()

    return throttled


def readiness(checks: dict[str, Check], registry: CollectorRegistry) -> Measure:
    """The readiness checks as `readiness_check_ok{check}` (1 passes, 0 fails), with the
    same checks and timeouts as `/readyz`."""
    ok = Gauge(
        "readiness_check_ok",
        "Whether a readiness check passed at the last scrape (1) or failed (0)",
        ["check"],
        registry=registry,
    )

    async def measure(request: Request) -> None:
        for name, error, _ in await run_checks(checks, request):
            ok.labels(name).set(1 if error is None else 0)

    return measure
