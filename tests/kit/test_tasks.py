"""Background tasks stop at shutdown: `cancel_and_wait` gets every task to its end, even one
that takes its cancellation for something else, and never eats the caller's own."""

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any

import pytest

from loupe_shared.kit import tasks
from loupe_shared.kit.tasks import cancel_and_wait


async def never() -> None:
    """Wait for what never comes (until cancelled)."""
    await asyncio.Event().wait()


async def started(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """The coroutine as a task that has reached its first wait."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(0)
    return task


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "RECANCEL_S", 0.05)
    cancellations = 0

    async def stubborn() -> None:
        nonlocal cancellations
        while True:
            try:
                await never()
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations >= 3:
                    raise

    task = await started(stubborn())
    stopping = asyncio.create_task(cancel_and_wait([task]))
    try:
        # Bounded, so that a regression fails here instead of hanging the suite.
        await asyncio.wait([stopping], timeout=30)
        assert stopping.done()
        assert task.cancelled()
        assert cancellations == 3
    finally:
        while not task.done():
            task.cancel()
            await asyncio.sleep(0)
        await asyncio.wait([stopping])


async def test_what_a_task_raises_while_stopping_is_not_raised() -> None:
    async def failing() -> None:
        try:
            await never()
        finally:
            raise RuntimeError("broken while stopping")

    first, second = await started(failing()), await started(failing())
    await cancel_and_wait([first, second])
    # Both were waited for, the second after the first's failure.
    assert isinstance(first.exception(), RuntimeError)
    assert isinstance(second.exception(), RuntimeError)


async def test_the_callers_own_cancellation_is_passed_on_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "RECANCEL_S", 0.05)
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await never()
        except asyncio.CancelledError:
            while not release.is_set():  # its clean-up takes until released, cancelled or not
                with suppress(asyncio.CancelledError):
                    await release.wait()
            raise

    task = await started(slow_to_stop())
    stopping = asyncio.create_task(cancel_and_wait([task]))
    try:
        await asyncio.sleep(0.2)  # it waits (and cancels again, in vain)
        assert not stopping.done()
        stopping.cancel()
        # Passed on at once: the caller is not held until the task has stopped.
        await asyncio.wait([stopping], timeout=30)
        assert stopping.cancelled()
        assert not task.done()
    finally:
        release.set()
        await asyncio.wait([task])
    assert task.cancelled()


async def test_a_clean_up_shorter_than_the_grace_is_not_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "RECANCEL_S", 0.5)
    cleaned = asyncio.Event()

    async def tidy() -> None:
        try:
            await never()
        finally:
            await asyncio.sleep(0.05)  # e.g. writes down that it stopped
            cleaned.set()

    task = await started(tidy())
    await cancel_and_wait([task])
    assert cleaned.is_set()
    assert task.cancelled()
