"""A service's own recent figures without a Prometheus: request rate, 5xx ratio and latency
quantiles over the last minutes, read from its `http_requests_total` and
`http_request_duration_seconds`, and the storage figures its scrape measures (the catalog's
stored bytes by kind, the images service's capacity and free space).

A sampler reads the two HTTP metrics every `SAMPLE_S` and keeps the readings of the last
`WINDOW_S`; a summary is the difference between a fresh reading and the oldest one kept.
Each replica answers for itself (the gateway picks one); probes and `/metrics` are left out.
"""

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field

from loupe_shared.kit.requests import WAITING_SUFFIX, HttpMetrics
from loupe_shared.kit.scrape import Scrape

SAMPLE_S = 5.0
WINDOW_S = 300.0
# Routes that are not the service's work: probes, scrapes, and this summary itself.
IGNORED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# The scrape measures that keep the storage gauges current (both refresh at most every
# interval, so a summary asked for often costs no more than a scrape).
STORAGE_MEASURES = ("storage", "store_capacity")


class Latency(BaseModel):
    """Quantiles estimated from the histogram's buckets, as Prometheus'
    `histogram_quantile` does (linear within a bucket); null without requests."""

    p50_s: float | None
    p95_s: float | None
    p99_s: float | None


class RequestFigures(BaseModel):
    window_s: float = Field(description="the time the figures cover (at most 300 s)")
    requests: int
    rate_per_s: float
    errors: int = Field(description="answers with a 5xx status")
    error_ratio: float | None = Field(description="errors / requests; null without requests")
    latency: Latency


class StorageFigures(BaseModel):
    """What this service measures of the image store; a field is null where it measures
    nothing (the catalog counts stored bytes, the images service the capacity and free
    space)."""

    used_bytes: int | None
    used_bytes_by_kind: dict[str, int]
    capacity_bytes: int | None
    free_bytes: int | None
    capacity_source: str | None = Field(description="seaweedfs (measured) or quota (set)")


class ServiceSummary(BaseModel):
    service: str
    at: datetime
    requests: RequestFigures
    storage: StorageFigures | None = Field(description="null: this service measures none")


@dataclass(frozen=True)
class _Reading:
    at: float
    requests: float
    errors: float
    # Cumulative count per upper bound, +Inf last.
    buckets: tuple[tuple[float, float], ...]


def _route_of(route: str) -> bool:
    return route not in IGNORED_ROUTES and not route.startswith("/api/services/")


def _timed(route: str) -> bool:
    """Whether a route's durations count in the latency: not a read that waited as long as it
    was asked to (`?wait=`)."""
    return _route_of(route) and not route.endswith(WAITING_SUFFIX)


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The `q` quantile of cumulative `buckets` (upper bound, count), +Inf last."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # above the largest finite bound: that bound, as Prometheus
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


@dataclass
class Sampler:
    metrics: HttpMetrics
    readings: deque[_Reading] = field(default_factory=deque)

    def read(self) -> _Reading:
        requests = errors = 0.0
        for family in self.metrics.requests.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and _route_of(sample.labels["route"]):
                    requests += sample.value
                    if sample.labels["status"].startswith("5"):
                        errors += sample.value
        buckets: dict[float, float] = {}
        for family in self.metrics.duration.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket") and _timed(sample.labels["route"]):
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
        return _Reading(time.monotonic(), requests, errors, tuple(sorted(buckets.items())))

    def sample(self) -> None:
        now = self.read()
        self.readings.append(now)
        while len(self.readings) > 1 and now.at - self.readings[1].at >= WINDOW_S:
            self.readings.popleft()

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_S)

    def figures(self) -> RequestFigures:
        now = self.read()
        within = [r for r in self.readings if now.at - r.at <= WINDOW_S]
        start = within[0] if within else (self.readings[-1] if self.readings else now)
        window = max(now.at - start.at, 0.0)
        requests = int(now.requests - start.requests)
        errors = int(now.errors - start.errors)
        before = dict(start.buckets)
        delta = tuple((bound, count - before.get(bound, 0.0)) for bound, count in now.buckets)
        return RequestFigures(
            window_s=round(window, 3),
            requests=requests,
            rate_per_s=round(requests / window, 6) if window > 0 else 0.0,
            errors=errors,
            error_ratio=round(errors / requests, 6) if requests else None,
            latency=Latency(
                p50_s=quantile(0.50, delta),
                p95_s=quantile(0.95, delta),
                p99_s=quantile(0.99, delta),
            ),
        )


def _gauges(
    registry: CollectorRegistry, names: set[str]
) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in names}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in names:
                found[sample.name].append((sample.labels, sample.value))
    return found


async def storage(request: Request, registry: CollectorRegistry) -> StorageFigures | None:
    """The storage gauges this service keeps, refreshed by their own measures first."""
    scrape = Scrape.of(registry)
    measures = [name for name in STORAGE_MEASURES if name in scrape.measures]
    if measures:
        await scrape.run(request, only=measures)
    gauges = _gauges(
        registry, {"images_stored_bytes", "images_store_capacity_bytes", "images_store_free_bytes"}
    )
    if not measures and not any(gauges.values()):
        return None
    by_kind = {labels["kind"]: int(value) for labels, value in gauges["images_stored_bytes"]}
    capacity = gauges["images_store_capacity_bytes"]
    free = gauges["images_store_free_bytes"]
    return StorageFigures(
        used_bytes=sum(by_kind.values()) if by_kind else None,
        used_bytes_by_kind=by_kind,
        capacity_bytes=int(capacity[0][1]) if capacity else None,
        free_bytes=int(free[0][1]) if free else None,
        capacity_source=capacity[0][0]["source"] if capacity else None,
    )


async def summary(
    request: Request, service: str, sampler: Sampler, registry: CollectorRegistry
) -> ServiceSummary:
    return ServiceSummary(
        service=service,
        at=datetime.now(UTC),
        requests=sampler.figures(),
        storage=await storage(request, registry),
    )
