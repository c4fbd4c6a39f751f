"""The notices that wake readers waiting for new results, on a real NATS server: a notice
wakes the readers of the lines it names and the readers of every line, not the others; a
notice whose lines cannot be read, or the server's shutdown, wakes everyone."""

import asyncio
import uuid

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from loupe_catalog.results.stored import MAX_LINES, StoredNotices, announce
from loupe_catalog.settings import CatalogSettings
from loupe_shared.contracts import subjects
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings

# Far longer than the test: a waiter that returns was woken by a notice, not by its recheck.
RECHECK_S = 60.0
WOKEN_WITHIN_S = 20.0


def test_a_notice_wakes_the_readers_of_its_lines_and_of_every_line(
    nats_settings: NatsSettings,
) -> None:
    async def scenario() -> None:
        nc = await connect(nats_settings, "tests")
        namespace = f"t{uuid.uuid4().hex[:8]}"
        try:
            notices = StoredNotices(nc, namespace, CollectorRegistry(), recheck_s=RECHECK_S)
            await notices.start()
            await nc.flush()

            def waiter(line: str | None) -> asyncio.Task[None]:
                return asyncio.create_task(
                    notices.wait_after(line, notices.generation(line), RECHECK_S)
                )

            line_a, line_b, every = waiter("line-a"), waiter("line-b"), waiter(None)
            await asyncio.sleep(0)  # each is waiting on its event now
            await announce(nc, namespace, {"line-a", "line-c"})
            await asyncio.wait_for(asyncio.gather(line_a, every), WOKEN_WITHIN_S)
            # Handled by the same notice: line-b's reader was not woken by line-a's results.
            assert not line_b.done()
            assert notices.generation("line-b") == (0, 0)
            assert notices.generation("line-a") == (0, 1)

            # A notice that names no readable lines wakes everyone.
            await nc.publish(subjects.subject(subjects.NOTICE_RESULTS_STORED, namespace), b"{")
            await asyncio.wait_for(line_b, WOKEN_WITHIN_S)

            # A reader that read its generation before a notice came is not made to wait.
            before = notices.generation("line-d")
            notices.changed(["line-d"])
            await asyncio.wait_for(notices.wait_after("line-d", before, RECHECK_S), 1.0)

            # The shutdown answers every reader still waiting, and none waits afterwards.
            late = waiter("line-e")
            await asyncio.sleep(0)
            notices.close()
            await asyncio.wait_for(late, WOKEN_WITHIN_S)
            await asyncio.wait_for(
                notices.wait_after("line-f", notices.generation("line-f"), RECHECK_S), 1.0
            )
        finally:
            await nc.drain()

    asyncio.run(scenario())


@pytest.mark.parametrize("lines", [[], ["x"] * 3])
def test_any_notice_counts_as_a_change_for_the_readers_of_every_line(
    nats_settings: NatsSettings, lines: list[str]
) -> None:
    async def scenario() -> None:
        nc = await connect(nats_settings, "tests")
        try:
            notices = StoredNotices(nc, "unused", CollectorRegistry(), recheck_s=RECHECK_S)
            before = notices.generation(None)
            notices.changed(lines)
            assert notices.generation(None) != before
        finally:
            await nc.drain()

    asyncio.run(scenario())


def test_more_lines_than_are_told_apart_wake_everyone_once(nats_settings: NatsSettings) -> None:
    async def scenario() -> None:
        nc = await connect(nats_settings, "tests")
        try:
            notices = StoredNotices(nc, "unused", CollectorRegistry(), recheck_s=RECHECK_S)
            notices.changed(["line-a"])
            before = notices.generation("line-b")
            waiting = asyncio.create_task(notices.wait_after("line-b", before, RECHECK_S))
            await asyncio.sleep(0)
            # A publisher inventing line ids: past MAX_LINES everything is forgotten and every
            # reader woken, line-b's too, though the notice did not name it.
            notices.changed([f"invented-{n}" for n in range(MAX_LINES + 1)])
            await asyncio.wait_for(waiting, WOKEN_WITHIN_S)
            assert notices.generation("line-b") != before
            assert notices.generation("line-a") == (1, 0)  # forgotten, counted afresh
        finally:
            await nc.drain()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("value", "ok"),
    [("1", True), ("60", True), ("0.001", True), ("0", False), ("-1", False), ("61", False)]
    + [(bad, False) for bad in ("nan", "inf", "soon", "")],
)
def test_the_recheck_is_bounded(value: str, ok: bool) -> None:
    if ok:
        settings = CatalogSettings.model_validate({"results_wait_recheck_s": value})
        assert settings.results_wait_recheck_s == float(value)
    else:
        with pytest.raises(ValidationError):
            CatalogSettings.model_validate({"results_wait_recheck_s": value})
