"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its real
dependencies answer too)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse

from loupe_shared.kit.problems import problem_response

Check = Callable[[Request], Awaitable[None]]


class CheckOutcome(BaseModel):
    ok: bool
    error: str | None
    ms: float


class Alive(BaseModel):
    """The process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Every check passed (otherwise a 503 problem with the same `checks`)."""

    status: Literal["ready"]
    checks: dict[str, CheckOutcome]


CHECK_TIMEOUT_S = 3.0


async def run_checks(
    checks: dict[str, Check], request: Request
) -> list[tuple[str, str | None, float]]:
    """(name, error or None, milliseconds) of every check, run at once, each within
    CHECK_TIMEOUT_S; `/readyz` and the readiness metric both answer from it."""

    async def run(name: str, check: Check) -> tuple[str, str | None, float]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await check(request)
            error = None
        except TimeoutError:
            error = f"no answer within {CHECK_TIMEOUT_S:g} s"
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        return name, error, round((time.perf_counter() - started) * 1000, 1)

    return list(await asyncio.gather(*(run(n, c) for n, c in checks.items())))


def health_router(checks: dict[str, Check]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process is up", response_model=Alive)
    async def healthz() -> Alive:
        return Alive(status="ok")

    @router.get("/readyz", summary="Readiness: every dependency answers", response_model=Readiness)
    async def readyz(request: Request) -> JSONResponse:
        outcomes = await run_checks(checks, request)
        report = {
            name: {"ok": error is None, "error": error, "ms": ms} for name, error, ms in outcomes
        }
        failing = [name for name, error, _ in outcomes if error is not None]
        if failing:
            return problem_response(request, 503, f"Not ready: {', '.join(failing)}", checks=report)
        return JSONResponse({"status": "ready", "checks": report})

    return router
