"""The line client's one seam into nats-py's internals (`loupe_line.client.
drop_unsent_publishes`), checked on a real connected client: this fails when the pinned
nats-py changes what the seam relies on, before the order across an outage silently suffers
(tests/line/test_outages.py checks that order end to end)."""

import uuid

from loupe_line.client import drop_unsent_publishes
from loupe_shared.kit.nats import connect, settled
from loupe_shared.kit.settings import NatsSettings


async def test_unsent_publishes_are_dropped_and_other_commands_kept(
    nats_settings: NatsSettings,
) -> None:
    topic = f"tests.seam.{uuid.uuid4().hex[:8]}"
    watcher = await connect(nats_settings, "tests-seam-watcher")
    nc = await connect(nats_settings, "tests-seam")
    try:
        seen = await watcher.subscribe(f"{topic}.>")
        await settled(watcher)

        # What the seam relies on, on a connected client.
        assert isinstance(nc._pending, list)
        assert isinstance(nc._pending_data_size, int)
        assert nc._pending_data_size == sum(len(c) for c in nc._pending)

        # Queued without a yield to the loop: nats-py's flusher has not written them yet.
        await nc.publish(f"{topic}.lost", b"plain")
        await nc.publish(f"{topic}.lost", b"with headers", headers={"k": "v"})
        mine = await nc.subscribe(f"{topic}.back")
        queued = list(nc._pending)
        assert all(isinstance(c, bytes) for c in queued)
        verbs = [c.split(b" ", 1)[0] for c in queued]
        assert verbs[-3:] == [b"PUB", b"HPUB", b"SUB"], verbs

        assert drop_unsent_publishes(nc) == 2
        assert [c.split(b" ", 1)[0] for c in nc._pending] == [
            v for v in verbs if v not in (b"PUB", b"HPUB")
        ]
        assert nc._pending_data_size == sum(len(c) for c in nc._pending)
        assert drop_unsent_publishes(nc) == 0

        # The dropped publishes never reach the server; the kept SUB does.
        await nc.publish(f"{topic}.after", b"after")
        await settled(nc)
        await watcher.publish(f"{topic}.back", b"back")
        await settled(watcher)
        assert (await mine.next_msg(timeout=5)).data == b"back"
        # One connection's messages arrive in order: sent, the lost ones would come first.
        got = [await seen.next_msg(timeout=5) for _ in range(2)]
        assert [(m.subject, m.data) for m in got] == [
            (f"{topic}.after", b"after"),
            (f"{topic}.back", b"back"),
        ]
    finally:
        await nc.close()
        await watcher.close()
