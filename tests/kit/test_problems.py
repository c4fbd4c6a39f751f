"""Errors are problem documents: the field path of a validation error, the request id, and
no internals on an unexpected failure."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from starlette.types import Message

from loupe_shared.kit.problems import Problem, install_problem_handlers
from loupe_shared.kit.requests import (
    BodyTimeout,
    HttpMetrics,
    RequestContextMiddleware,
    timed_receive,
)


class Roi(BaseModel):
    x: int = Field(ge=0)
    width: int = Field(gt=0)


class Tool(BaseModel):
    name: str
    roi: Roi


class Config(BaseModel):
    tools: list[Tool]


def _app(body_idle_timeout_s: float = 30.0, body_timeout_s: float = 600.0) -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        RequestContextMiddleware,
        metrics=HttpMetrics(CollectorRegistry()),
        body_idle_timeout_s=body_idle_timeout_s,
        body_timeout_s=body_timeout_s,
    )
    install_problem_handlers(app)

    @app.post("/configs")
    async def save(config: Config) -> dict[str, int]:
        return {"tools": len(config.tools)}

    @app.get("/conflict")
    async def conflict() -> None:
        raise Problem(409, "The program was changed meanwhile.", current_etag='"r7"')

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"keys": len(json.loads(await request.body()))}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_validation_error_names_the_field_path(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/configs",
        json={
            "tools": [
                {"name": "a", "roi": {"x": 0, "width": 5}},
                {"name": "b", "roi": {"x": -1, "width": 5}},
            ]
        },
        headers={"X-Request-Id": "req-1"},
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["errors"][0]["field"] == "body:tools.1.roi.x"
    assert body["detail"].startswith("body:tools.1.roi.x:")
    assert body["request_id"] == "req-1"
    assert answer.headers["x-request-id"] == "req-1"


async def test_malformed_json_is_a_4xx_problem(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/configs", content=b'{"tools": [', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"


async def test_domain_problems_carry_extra_members(client: httpx.AsyncClient) -> None:
    answer = await client.get("/conflict")
    assert answer.status_code == 409
    assert answer.json()["current_etag"] == '"r7"'


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nowhere")).json()["status"] == 404
    wrong = await client.delete("/configs")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_unexpected_errors_are_500_without_internals(client: httpx.AsyncClient) -> None:
    answer = await client.get("/boom")
    assert answer.status_code == 500
    assert "hunter2" not in answer.text
    assert answer.json()["request_id"]


@pytest.mark.parametrize("path", ["/configs", "/raw"])
async def test_json_nested_too_deep_is_a_422_problem(client: httpx.AsyncClient, path: str) -> None:
    """Python's parser recurses per level: 10,000 levels exhaust the stack wherever the body
    is read, by FastAPI or by the route itself."""
    body = "[" * 10_000 + "]" * 10_000
    answer = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "nested too deeply" in answer.json()["detail"]


async def _post_slowly(app: FastAPI, path: str, chunks: list[bytes], pause_s: float) -> Any:
    """Drive the app as a server would for a client sending `chunks` with `pause_s` between
    them (the client's pace); answers the status and the body of the answer."""
    sent: list[Message] = []
    queue = list(chunks)

    async def receive() -> Message:
        if not queue:
            await asyncio.Event().wait()  # the client sends nothing more
        chunk = queue.pop(0)
        if chunk != chunks[0]:
            await asyncio.sleep(pause_s)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1234),
        "headers": [(b"content-type", b"application/json")],
        "app": app,
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


async def test_a_body_that_stops_arriving_is_a_408_problem() -> None:
    app = _app(body_idle_timeout_s=0.2, body_timeout_s=5.0)
    status, problem = await _post_slowly(app, "/configs", [b'{"tools": ', b"[]}"], pause_s=1.0)
    assert status == 408
    assert "stopped arriving" in problem["detail"]
    assert problem["request_id"]
    # The same body at a pace within the bound is read and answered.
    status, answer = await _post_slowly(app, "/configs", [b'{"tools": ', b"[]}"], pause_s=0.05)
    assert (status, answer) == (200, {"tools": 0})


async def test_a_body_trickled_past_the_whole_body_bound_is_a_408_problem() -> None:
    app = _app(body_idle_timeout_s=1.0, body_timeout_s=0.5)
    chunks = [b'{"tools": '] + [b" "] * 20 + [b"[]}"]
    status, problem = await _post_slowly(app, "/raw", chunks, pause_s=0.1)
    assert status == 408, problem


async def test_a_chunk_waiting_after_the_whole_body_bound_is_refused() -> None:
    """The whole-body bound holds even for a chunk that is already there when it is asked for
    (a timeout of zero would let a ready chunk through)."""

    async def ready() -> Message:
        return {"type": "http.request", "body": b"x", "more_body": True}

    receive = timed_receive(ready, idle_s=10.0, whole_s=0.05)
    assert (await receive())["body"] == b"x"  # within the bound
    await asyncio.sleep(0.1)  # the client's pace: the bound passes
    with pytest.raises(BodyTimeout):
        await receive()
