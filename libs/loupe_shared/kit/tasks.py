"""Background tasks: a loop supervised forever, and tasks cancelled and awaited at shutdown."""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loupe_shared.kit.logging import get_logger

_log = get_logger("loupe.tasks")

# How long a cancelled task is waited for before it is cancelled again: long enough for the
# clean-up a task does when cancelled (a backup marking itself failed, a restore taking its
# notice down), short beside the time a service is given to stop.
RECANCEL_S = 5.0


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


async def stopped(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every task and wait until each has finished, leaving their outcomes to the
    caller. A task still running `RECANCEL_S` after its cancellation is cancelled again: code
    that takes a cancellation for something else (on Python 3.11, `asyncio.wait_for` whose
    awaitable completes as it is cancelled; a library's `except CancelledError`) must not keep
    a shutdown waiting forever; a clean-up that takes longer is cut short. A cancellation of
    the caller itself while it waits is passed on at once."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        while not task.done():
            await asyncio.wait([task], timeout=RECANCEL_S)
            if not task.done():
                _log.warning("task.cancelled_again", task=_name(task))
                task.cancel()


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """`stopped`, then what the tasks raised while stopping is logged, not raised (shutdown
    goes on)."""
    pending = list(tasks)
    await stopped(pending)
    for task in pending:
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.warning("task.failed_while_stopping", task=_name(task), error=str(exc))


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
