"""ASGI middleware: request id, access log and HTTP metrics for every request."""

import asyncio
import time
import uuid
from urllib.parse import parse_qsl

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import VALID_REQUEST_ID, problem_response

REQUEST_ID_HEADER = "x-request-id"
_log = get_logger("loupe.http")


def request_id(request: Request) -> str | None:
    """The id the request-id middleware gave this request."""
    value: str | None = request.scope["state"].get("request_id")
    return value


BODY_IDLE_TIMEOUT_S = 30.0
BODY_TIMEOUT_S = 600.0


BODY_TIMEOUT_DETAIL = (
    "The request body stopped arriving (or came too slowly); nothing was done. "
    "Send the whole body again."
)


# A read that asks to wait for something new (`?wait=`, a long poll) takes as long as it was
# asked to: it is timed under its route with this suffix, apart from the route's other
# requests, and left out of the latency figures (the recording rules, the summary).
WAITING_SUFFIX = " (wait)"


def _waits(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    if b"wait=" not in query:
        return False
    for name, value in parse_qsl(query.decode("latin-1")):
        if name == "wait" and value.strip("0."):  # not "", "0", "0.0"
            return True
    return False


class BodyTimeout(HTTPException):
    """The client stopped sending its request body (or sends it too slowly). An HTTP
    exception, so a framework reading the body answers it as the 408 it is."""

    def __init__(self) -> None:
        super().__init__(408, BODY_TIMEOUT_DETAIL, headers={"Connection": "close"})


def timed_receive(receive: Receive, idle_s: float, whole_s: float) -> Receive:
    """`receive` with bounds on a slow body: each chunk must come within `idle_s` and the
    whole body within `whole_s` (the gateway streams bodies through)."""
    deadline = time.monotonic() + whole_s
    done = False

    async def receive_timed() -> Message:
        nonlocal done
        if done:
            return await receive()
        left = deadline - time.monotonic()
        if left <= 0:  # even if a chunk is waiting: the whole body is late
            raise BodyTimeout
        try:
            async with asyncio.timeout(min(idle_s, left)):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            done = True
        return message

    return receive_timed


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
        )
        # The labelled children, by their labels: `labels()` checks its arguments and takes a
        # lock on every call, twice a request. (As many as the metrics' own children.)
        self._counted: dict[tuple[str, str, int], Counter] = {}
        self._timed: dict[tuple[str, str], Histogram] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request: counted by method, route and status; timed by the first two."""
        counted = self._counted.get((method, route, status))
        if counted is None:
            counted = self._counted[method, route, status] = self.requests.labels(
                method, route, str(status)
            )
        counted.inc()
        timed = self._timed.get((method, route))
        if timed is None:
            timed = self._timed[method, route] = self.duration.labels(method, route)
        timed.observe(seconds)


class RequestContextMiddleware:
    """Takes the caller's `X-Request-Id` (or makes one), binds it to every log line of the
    request, echoes it on the answer, logs one access line and records metrics."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpMetrics,
        body_idle_timeout_s: float = BODY_IDLE_TIMEOUT_S,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_idle_timeout_s = body_idle_timeout_s
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            if message["type"] == "http.response.start":
                started_response = True
            await send_with_id(message)

        try:
            await self.app(
                scope,
                timed_receive(receive, self.body_idle_timeout_s, self.body_timeout_s),
                send_tracked,
            )
        except BodyTimeout:
            _log.warning("request.body_timeout", method=scope["method"], path=scope["path"])
            if started_response:
                raise
            response = problem_response(
                Request(scope), 408, BODY_TIMEOUT_DETAIL, headers={"Connection": "close"}
            )
            await response(scope, receive, send_with_id)
        except Exception:
            # Answered here rather than by Starlette's outermost error handler, so the line
            # with the traceback and the 500 answer both carry the request id.
            _log.exception("request.failed", method=scope["method"], path=scope["path"])
            if started_response:
                raise
            response = problem_response(
                Request(scope), 500, "An unexpected error occurred; it has been logged."
            )
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            if _waits(scope):
                template += WAITING_SUFFIX
            self.metrics.record(method, template, status, elapsed)
            if template not in ("/healthz", "/readyz", "/metrics"):
                _log.info(
                    "http.request",
                    method=method,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            # The id stays bound: uvicorn runs each request in its own task (its own copy of the
            # context), and lines logged after this middleware returns (uvicorn's own error
            # lines) must carry it too. The next request of a connection binds its own.
