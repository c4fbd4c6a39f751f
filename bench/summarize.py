"""`python -m bench.summarize RUN.json ...`: the ratios issue 19 tracks, as the median, min
and max over several whole `make bench` runs (each run's `bench/results/latest.json`, copied
aside), with the goal each is held to.

    make bench && cp bench/results/latest.json run1.json   # three times
    .venv/bin/python -m bench.summarize run1.json run2.json run3.json
"""

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = dict[str, Any]
Rows = list[Row]


def _row(rows: Rows, bench: str, case: str, **fields: Any) -> Row:
    for row in rows:
        if (
            row.get("bench") == bench
            and case in str(row.get("case", ""))
            and all(row.get(k) == v for k, v in fields.items())
        ):
            return row
    raise KeyError(f"{bench}: no case containing {case!r} {fields or ''}")


def _field(bench: str, case: str, key: str, **fields: Any) -> Callable[[Rows], float]:
    return lambda rows: float(_row(rows, bench, case, **fields)[key])


def _latency(reader: str) -> Callable[[Rows], float]:
    """The visible p99 over the bare subscriber's p99 measured beside the same reader (runs
    before both readers were measured held only the polling one, without `reader`)."""

    def ratio(rows: Rows) -> float:
        latency = [row for row in rows if row.get("bench") == "results-latency"]
        fields = {"reader": reader} if any("reader" in row for row in latency) else {}
        if reader != "poll" and not fields:
            raise KeyError(f"results-latency: no {reader} reader in this run")
        visible = _row(rows, "results-latency", "visible", **fields)["p99_ms"]
        bare = _row(rows, "results-latency", "bare NATS subscriber", **fields)["p99_ms"]
        return float(visible) / float(bare)

    return ratio


# (what, goal, how it is read from one run, whether higher is better, the goal's figure)
RATIOS: list[tuple[str, str, Callable[[Rows], float], bool, float]] = [
    (
        "line client publish (models) vs bare pre-serialized batches",
        ">= 0.3",
        _field("line-publish", "InspectionResult models", "vs_ceiling"),
        True,
        0.3,
    ),
    (
        "line client publish (dicts validated on submit) vs the same ceiling",
        "(not a goal)",
        _field("line-publish", "dicts validated", "vs_ceiling"),
        True,
        0.0,
    ),
    (
        "results drain vs a bare indexed COPY",
        ">= 0.6",
        _field("results-drain", "drained by one ingester", "ratio"),
        True,
        0.6,
    ),
    (
        "publish -> visible p99 vs the bare subscriber's p99, a reader with `wait`",
        "<= 3",
        _latency("wait"),
        False,
        3.0,
    ),
    (
        "publish -> visible p99 vs the bare subscriber's p99, a reader polling every 10 ms",
        "(not a goal)",
        _latency("poll"),
        False,
        3.0,
    ),
    (
        "inspection 5 MP, 1 worker, vs the bare pipeline",
        ">= 0.95",
        _field("inspect", "1 worker", "vs_bare_throughput_per_worker", size="5 MP"),
        True,
        0.95,
    ),
    (
        "inspection 12 MP, 1 worker, vs the bare pipeline",
        ">= 0.95",
        _field("inspect", "1 worker", "vs_bare_throughput_per_worker", size="12 MP"),
        True,
        0.95,
    ),
    (
        "12 MP upload through the gateway vs bare put + decode + WebP",
        ">= 0.8",
        _field("images", "12 MP JPEG upload through the gateway", "throughput_vs_baseline"),
        True,
        0.8,
    ),
    (
        "256 px thumbnail GET through the gateway vs a bare S3 GET",
        ">= 0.8",
        _field("images", "thumbnail GET through the gateway", "throughput_vs_baseline"),
        True,
        0.8,
    ),
    (
        "256 px thumbnail GET straight to the images service vs a bare S3 GET",
        "(>= 0.8)",
        _field("images", "thumbnail GET straight", "throughput_vs_baseline"),
        True,
        0.8,
    ),
    (
        "gateway overhead, p50 through Caddy vs direct",
        "<= 1.5",
        _field("gateway", "through the gateway", "ratio_p50"),
        False,
        1.5,
    ),
    (
        "program get through the gateway vs bare FastAPI + psycopg, throughput",
        ">= 0.9",
        _field("catalog", "get-by-id through the gateway", "throughput_vs_baseline"),
        True,
        0.9,
    ),
    (
        "program get through the gateway, p99 vs the bare p99",
        "<= 1.5",
        _field("catalog", "get-by-id through the gateway", "p99_vs_baseline"),
        False,
        1.5,
    ),
    (
        "program get straight to the catalog vs bare FastAPI + psycopg, throughput",
        "(>= 0.9)",
        _field("catalog", "get-by-id straight", "throughput_vs_baseline"),
        True,
        0.9,
    ),
    (
        "program get straight to the catalog, p99 vs the bare p99",
        "(<= 1.5)",
        _field("catalog", "get-by-id straight", "p99_vs_baseline"),
        False,
        1.5,
    ),
    (
        "full backup vs a bare copy",
        ">= 0.9",
        _field("backup", "full backup", "vs_bare_copy"),
        True,
        0.9,
    ),
    (
        "full backup vs the bare copy run before it alone (no A-B-A)",
        "(>= 0.9)",
        _field("backup", "full backup", "vs_bare_before"),
        True,
        0.9,
    ),
    (
        "restore vs a bare copy",
        ">= 0.9",
        _field("backup", "restore", "vs_bare_copy"),
        True,
        0.9,
    ),
    (
        "restore vs the bare copy run before it alone (no A-B-A)",
        "(>= 0.9)",
        _field("backup", "restore", "vs_bare_before"),
        True,
        0.9,
    ),
    (
        "incremental backup, nothing changed, vs the full backup",
        "< 0.02",
        _field("backup", "incremental", "vs_full"),
        False,
        0.02,
    ),
]


def summarize(runs: list[Rows]) -> list[dict[str, Any]]:
    answer = []
    for what, goal, read, higher, target in RATIOS:
        values: list[float] = []
        for rows in runs:
            try:
                values.append(read(rows))
            except KeyError:
                continue
        if not values:
            answer.append({"what": what, "goal": goal, "runs": 0})
            continue
        median = statistics.median(values)
        met = median >= target if higher else median <= target
        answer.append(
            {
                "what": what,
                "goal": goal,
                "runs": len(values),
                "values": [round(v, 3) for v in values],
                "median": round(median, 3),
                "min": round(min(values), 3),
                "max": round(max(values), 3),
                "met": met if not goal.startswith("(") else None,
            }
        )
    return answer


def print_table(runs: list[Rows]) -> None:
    """The ratios as a Markdown table; those no run measured are left out."""
    print("| ratio | goal | runs | median | min | max | met |")
    print("|---|---|---|---|---|---|---|")
    for found in summarize(runs):
        if not found["runs"]:
            continue
        met = {True: "yes", False: "**no**", None: ""}[found["met"]]
        print(
            f"| {found['what']} | {found['goal']} | {found['runs']} | **{found['median']}** "
            f"| {found['min']} | {found['max']} | {met} |"
        )


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    print_table([json.loads(Path(p).read_text())["rows"] for p in paths])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
