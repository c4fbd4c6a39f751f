"""`python -m bench.summarize`: median, min and max of each tracked ratio over whole runs,
held to its goal in the right direction."""

from typing import Any

from bench.summarize import summarize


def _run(drain: float, gateway: float, visible_p99: float) -> list[dict[str, Any]]:
    latency = "results-latency"
    return [
        {"bench": "results-drain", "case": "stream drained by one ingester", "ratio": drain},
        {"bench": "gateway", "case": "through the gateway", "ratio_p50": gateway},
        # Each reader beside its own baseline: the polling one's figures must not be read.
        {"bench": latency, "reader": "poll", "case": "to a bare NATS subscriber", "p99_ms": 5.0},
        {"bench": latency, "reader": "poll", "case": "visible in GET", "p99_ms": 80.0},
        {"bench": latency, "reader": "wait", "case": "to a bare NATS subscriber", "p99_ms": 10.0},
        {"bench": latency, "reader": "wait", "case": "visible in GET", "p99_ms": visible_p99},
    ]


def _by_what(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {found["what"]: found for found in summarize(runs)}


def test_median_min_and_max_over_the_runs_and_the_goal_direction() -> None:
    found = _by_what([_run(0.55, 1.6, 50.0), _run(0.7, 1.2, 20.0), _run(0.65, 1.4, 31.0)])
    drain = found["results drain vs a bare indexed COPY"]
    assert (drain["median"], drain["min"], drain["max"]) == (0.65, 0.55, 0.7)
    assert drain["met"] is True  # higher is better: 0.65 >= 0.6
    gateway = found["gateway overhead, p50 through Caddy vs direct"]
    assert gateway["median"] == 1.4
    assert gateway["met"] is True  # lower is better: 1.4 <= 1.5
    latency = found["publish -> visible p99 vs the bare subscriber's p99, a reader with `wait`"]
    assert latency["values"] == [5.0, 2.0, 3.1]
    assert latency["met"] is False  # 3.1 > 3
    polled = found[
        "publish -> visible p99 vs the bare subscriber's p99, a reader polling every 10 ms"
    ]
    assert polled["values"] == [16.0, 16.0, 16.0]
    assert polled["met"] is None  # shown, not a goal


def test_a_run_from_before_the_waiting_reader_counts_for_the_polling_one_only() -> None:
    older = [
        {"bench": "results-latency", "case": "to a bare NATS subscriber", "p99_ms": 10.0},
        {"bench": "results-latency", "case": "visible in GET", "p99_ms": 80.0},
    ]
    found = _by_what([older])
    assert (
        found["publish -> visible p99 vs the bare subscriber's p99, a reader with `wait`"]["runs"]
        == 0
    )
    polled = found[
        "publish -> visible p99 vs the bare subscriber's p99, a reader polling every 10 ms"
    ]
    assert polled["values"] == [8.0]


def test_a_ratio_no_run_measured_is_counted_as_such() -> None:
    found = _by_what([_run(0.7, 1.2, 20.0)])
    assert found["full backup vs a bare copy"]["runs"] == 0
    assert found["results drain vs a bare indexed COPY"]["runs"] == 1
