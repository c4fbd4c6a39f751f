"""The monitoring files under deploy/monitoring, read for the tests."""

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES_DIR = MONITORING / "prometheus" / "rules"
RULE_TESTS_DIR = MONITORING / "prometheus" / "tests"
DASHBOARDS_DIR = MONITORING / "grafana" / "dashboards"

# Words in PromQL that are not metric names.
_PROMQL_WORDS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "predict_linear",
        "histogram_quantile",
        "time",
        "vector",
        "scalar",
        "abs",
        "absent",
        "absent_over_time",
        "clamp",
        "clamp_min",
        "clamp_max",
        "ceil",
        "floor",
        "round",
        "label_replace",
        "label_join",
        "sort",
        "sort_desc",
        "timestamp",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "changes",
        "resets",
        "inf",
        "nan",
        "le",
    ]
)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yaml"))


@cache
def rules() -> list[dict[str, Any]]:
    found = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded() -> dict[str, str]:
    """Recording rule name -> its expression."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: identifiers that are not PromQL words,
    label names, label values, durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables ($__rate_interval, ${job})
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*\b", "", text)  # numbers, durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n.lower() not in _PROMQL_WORDS and not re.fullmatch(r"\d+\w*", n)}


def scraped_names(expr: str) -> set[str]:
    """The scraped metrics an expression depends on, through recording rules too."""
    made = recorded()
    found: set[str] = set()
    for name in metric_names(expr):
        found |= scraped_names(made[name]) if name in made else {name}
    return found
