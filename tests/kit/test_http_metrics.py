"""`HttpMetrics.record`: the labelled children it keeps are the metrics' own series."""

from prometheus_client import CollectorRegistry

from loupe_shared.kit.requests import HttpMetrics


def test_recorded_requests_land_in_their_own_series() -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    metrics.record("GET", "/api/things/{id}", 200, 0.004)
    metrics.record("GET", "/api/things/{id}", 200, 0.2)
    metrics.record("GET", "/api/things/{id}", 404, 0.001)
    metrics.record("POST", "/api/things", 201, 0.03)

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        assert found is not None, (name, labels)
        return found

    assert value("http_requests_total", method="GET", route="/api/things/{id}", status="200") == 2
    assert value("http_requests_total", method="GET", route="/api/things/{id}", status="404") == 1
    assert value("http_requests_total", method="POST", route="/api/things", status="201") == 1
    assert value("http_request_duration_seconds_count", method="GET", route="/api/things/{id}") == 3
    assert (
        value("http_request_duration_seconds_sum", method="GET", route="/api/things/{id}")
        == 0.004 + 0.2 + 0.001
    )
    assert (
        value(
            "http_request_duration_seconds_bucket",
            method="GET",
            route="/api/things/{id}",
            le="0.005",
        )
        == 2
    )
    # A series labelled elsewhere (before or after) is the same series.
    metrics.requests.labels("GET", "/api/things/{id}", "200").inc()
    metrics.record("GET", "/api/things/{id}", 200, 0.004)
    assert value("http_requests_total", method="GET", route="/api/things/{id}", status="200") == 4
