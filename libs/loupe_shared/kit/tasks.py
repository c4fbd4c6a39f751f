"""Background tasks: a loop supervised forever, and tasks cancelled and awaited at shutdown."""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loupe_shared.kit.logging import get_logger

_log = get_logger("loupe.tasks")


async def supervise(
    run: Callable[[], Awaitable[None]],
    *,
    event: str,
    delay_s: float = 1.0,
    on_failure: Callable[[], None] | None = None,
    **log_fields: object,
) -> None:
    """Run `run` until cancelled, starting it again `delay_s` after any failure (a lost stream
    or connection is retried, never fatal). Each failure is logged as `event` with its error;
    `on_failure` runs first (to clear a readiness flag, say)."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_failure is not None:
                on_failure()
            _log.warning(event, error=str(exc), **log_fields)
        else:
            # A loop that returns is restarted too: supervision means it keeps running.
            _log.warning(event, error="returned", **log_fields)
        await asyncio.sleep(delay_s)


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every task, then wait for each to finish; what they raise while stopping is
    logged, not raised (shutdown goes on). A cancellation of the caller itself while it waits
    is passed on, not taken for one of the tasks'."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception as exc:
            _log.warning("task.failed_while_stopping", task=_name(task), error=str(exc))


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
