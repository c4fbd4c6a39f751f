from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from loupe_shared.kit.consumers import DeadLetters


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = Counter(
            "inspect_results_total", "Results published, by verdict", ["verdict"], registry=registry
        )
        self.seconds = Histogram(
            "inspect_seconds",
            "Time from picking a request up to its result (load, decode, inspect)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.retries = Counter(
            "inspect_retries_total",
            "Requests left for redelivery (a dependency down)",
            registry=registry,
        )
        # Requests set aside, by reason: consumer_dead_lettered_total{consumer,reason}.
        self.dead_letters = DeadLetters.of(registry)
        self.in_flight = Gauge("inspect_in_flight", "Requests being inspected", registry=registry)
        self.master_cache_bytes = Gauge(
            "inspect_master_cache_bytes", "Bytes held by the master image cache", registry=registry
        )
