"""The ops summary every service answers (`GET /api/services/<name>/summary`): request
rate, 5xx ratio and latency quantiles of the last minutes from the service's own metrics,
and the storage figures it measures."""

import asyncio
import math
import uuid

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from loupe_images import capacity
from loupe_images.settings import ImagesSettings
from loupe_shared.kit.auth import Role
from loupe_shared.kit.requests import HttpMetrics
from loupe_shared.kit.summary import Sampler, quantile, storage
from tests.conftest import TokenMaker, auth

SERVICES = ("catalog", "images", "backup", "inspect")
INF = math.inf


def test_quantiles_follow_histogram_quantile() -> None:
    # 10 requests under 0.1 s, 10 between 0.1 and 0.5 s: the median is the 0.1 bound.
    buckets = ((0.1, 10.0), (0.5, 20.0), (INF, 20.0))
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.3)
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    # Beyond the largest finite bound: that bound.
    assert quantile(0.99, ((0.1, 1.0), (INF, 100.0))) == pytest.approx(0.1)
    assert quantile(0.5, ((0.1, 0.0), (INF, 0.0))) is None
    assert quantile(0.5, ()) is None


def test_the_sampler_answers_what_changed_in_the_window() -> None:
    metrics = HttpMetrics(CollectorRegistry())
    sampler = Sampler(metrics)
    metrics.requests.labels("GET", "/api/old", "200").inc(50)
    metrics.duration.labels("GET", "/api/old").observe(9.0)
    sampler.sample()
    for status, seconds in (("200", 0.004), ("200", 0.004), ("404", 0.2), ("503", 0.2)):
        metrics.requests.labels("GET", "/api/things/{id}", status).inc()
        metrics.duration.labels("GET", "/api/things/{id}").observe(seconds)
    # Probes and service routes are not the service's work.
    metrics.requests.labels("GET", "/readyz", "503").inc(7)
    metrics.duration.labels("GET", "/readyz").observe(20.0)
    metrics.requests.labels("GET", "/api/services/images/summary", "200").inc()
    # A read that waited as asked (`?wait=`) is counted, but its time is not latency.
    metrics.requests.labels("GET", "/api/things (wait)", "200").inc()
    metrics.duration.labels("GET", "/api/things (wait)").observe(30.0)
    figures = sampler.figures()
    assert (figures.requests, figures.errors, figures.error_ratio) == (5, 1, 0.2)
    assert figures.latency.p50_s is not None
    assert figures.latency.p50_s <= 0.005
    assert figures.latency.p99_s is not None
    assert 0.1 < figures.latency.p99_s <= 0.25
    assert figures.window_s >= 0


def test_capacity_set_as_a_quota_is_a_storage_figure() -> None:
    registry = CollectorRegistry()
    capacity.install(registry, ImagesSettings(store_quota_bytes=10_000))
    request = Request({"type": "http", "app": None, "headers": []})
    found = asyncio.run(storage(request, registry))
    assert found is not None
    assert (found.capacity_bytes, found.capacity_source, found.free_bytes) == (
        10_000,
        "quota",
        None,
    )
    assert found.used_bytes is None
    assert asyncio.run(storage(request, CollectorRegistry())) is None


def test_every_service_summarises_its_recent_requests(
    gateway: httpx.Client, make_token: TokenMaker
) -> None:
    viewer = auth(make_token(Role.VIEWER, "summary-viewer"))
    assert gateway.get(f"/api/programs/{uuid.uuid4()}", headers=viewer).status_code == 404
    assert gateway.get("/api/programs", headers=viewer).status_code == 200
    for service in SERVICES:
        answer = gateway.get(f"/api/services/{service}/summary", headers=viewer)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["service"] == service
        figures = body["requests"]
        assert 0 <= figures["window_s"] <= 310
        assert figures["errors"] <= figures["requests"]
        if service == "catalog":
            assert figures["requests"] >= 2
            assert figures["error_ratio"] is not None
            assert figures["latency"]["p50_s"] is not None
            assert body["storage"]["used_bytes_by_kind"] is not None
        if service == "images":
            # The embedded stack points the images service at SeaweedFS's master.
            storage_figures = body["storage"]
            assert storage_figures["capacity_source"] == "seaweedfs"
            assert 0 < storage_figures["free_bytes"] <= storage_figures["capacity_bytes"]
        if service in ("backup", "inspect"):
            assert body["storage"] is None


def test_the_summary_needs_a_token(gateway: httpx.Client) -> None:
    for service in SERVICES:
        answer = gateway.get(f"/api/services/{service}/summary")
        assert answer.status_code == 401
        assert answer.headers["content-type"].startswith("application/problem+json")
        bad = gateway.get(f"/api/services/{service}/summary", headers=auth("loupe_x"))
        assert bad.status_code == 401
