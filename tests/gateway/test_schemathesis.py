"""Every service's OpenAPI, tried by schemathesis through the gateway with an admin token:
no answer is a 5xx, every status and content type is one the document states, and every
documented body matches its schema.

It runs on a stack of its own (on the embedded stack): restore, garbage collection and
retention runs with generated values would otherwise change the data other tests rely on.
"""

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from loupe_stack.config import StackSettings
from loupe_stack.stack import Stack
from tests.support import free_stack_ports

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SERVICES = ("catalog", "images", "backup", "inspect")
# Examples per operation and generation mode: enough to reach every parameter's bounds and
# types, few enough that the four services take a minute or two on two cores.
EXAMPLES = int(os.environ.get("LOUPE_SCHEMATHESIS_EXAMPLES", "3"))
STREAM_READ_S = 3.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# On a shared stack (not embedded) the operations that would change what other tests see.
DESTRUCTIVE = {
    ("POST", "/api/backups/{backup_id}/restore"): "replaces the whole installation",
    ("POST", "/api/images/gc"): "collects blobs other tests uploaded moments ago",
    ("POST", "/api/retention/runs"): "deletes results other tests read",
    ("PUT", "/api/retention/policies/{scope}/{target}"): "feeds the retention run",
}


@dataclass
class Tally:
    operations: int = 0
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    nonconforming: list[str] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, bool]]:
    """(gateway URL, admin token, whether the stack is this module's own)."""
    if os.environ.get("LOUPE_TEST_STACK", "embedded") != "embedded":
        platform: Stack = request.getfixturevalue("platform")
        yield platform.gateway_url, platform.admin_token, False
        return
    base = Path(tempfile.mkdtemp(prefix="loupe-schemathesis-"))
    settings = StackSettings.model_validate(
        {
            "data_dir": base / "data",
            **{name.lower(): port for name, port in free_stack_ports().items()},
            "stop_timeout_s": 10,
            "log_level": "warning",
        }
    )
    stack = Stack(settings)
    stack.start()
    try:
        yield stack.gateway_url, stack.admin_token, True
    finally:
        stack.stop()


def _describe(case: Any, response: Any) -> str:
    body = response.text[:300].replace("\n", " ") if hasattr(response, "text") else ""
    return (
        f"{case.method} {case.formatted_path} query={case.query!r} "
        f"body={str(case.body)[:200]!r} -> {response.status_code} {body}"
    )


def _streams(operation: Any) -> bool:
    """Whether an operation answers an event stream (a live feed that never ends by itself)."""
    return "text/event-stream" in json.dumps(operation.definition.raw.get("responses", {}))


def _shorten_waits(case: Any) -> None:
    """A valid `wait` (a reader waiting for new results or for a backup set, up to 30 s) is
    held to a tenth of a second: on a stack with nothing arriving every such case would wait
    its whole time. Its bounds and types are still tried (an invalid value is sent as
    generated)."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0.1 < wait <= 30:
        case.query["wait"] = 0.1


def _fuzz(operation: Any, gateway: str, token: str, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    # A live feed is read for STREAM_READ_S, then cut and checked on what arrived (its first
    # events come at once); a whole request timeout on each would be a minute of waiting.
    timeout = STREAM_READ_S if _streams(operation) else 30
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            _shorten_waits(case)
            started = time.monotonic()
            response = case.call(base_url=gateway, headers=headers, timeout=timeout)
            tally.slowest.append((time.monotonic() - started, _describe(case, response)[:200]))
            tally.requests += 1
            if response.status_code >= 500:
                tally.server_errors.append(_describe(case, response))
                return
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
                summary = "; ".join(
                    f"{getattr(f, 'title', type(f).__name__)}: {str(f)[:300]}" for f in failures
                )
                tally.nonconforming.append(f"{_describe(case, response)} :: {summary}")

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # No parameter or body to get wrong: there is no negative case to generate.
            assert mode is GenerationMode.NEGATIVE


@pytest.mark.parametrize("service", SERVICES)
def test_the_api_conforms_to_its_document(
    target: tuple[str, str, bool], service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, token, own_stack = target
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi/{service}.json")
    tally = Tally()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"{service}: an operation's schema is invalid: {result}"
        operation = result.ok()
        if not operation.path.startswith("/api/"):
            continue  # /healthz, /readyz, /metrics: answered by each service, not the gateway
        if not own_stack and (operation.method.upper(), operation.path) in DESTRUCTIVE:
            continue
        tally.operations += 1
        _fuzz(operation, gateway, token, tally)
    with capsys.disabled():
        print(
            f"\nschemathesis {service}: {tally.operations} operations, "
            f"{tally.requests} requests, {len(tally.server_errors)} 5xx, "
            f"{len(tally.nonconforming)} nonconforming"
        )
        for took, what in sorted(tally.slowest, reverse=True)[:3]:
            print(f"  {took:6.2f} s  {what}")
        for line in tally.server_errors + tally.nonconforming:
            print(f"  {line}")
    assert tally.operations > 0
    assert not tally.server_errors, tally.server_errors
    assert not tally.nonconforming, tally.nonconforming
