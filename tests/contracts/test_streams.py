"""Set-up creates file-backed streams (idempotently) and namespaces isolate them."""

import asyncio
import uuid

from nats.js.api import StorageType

from loupe_shared.contracts import subjects
from loupe_shared.contracts.streams import STREAMS
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.bootstrap import bootstrap
from loupe_stack.stack import Stack


def test_setup_is_idempotent_and_streams_are_file_backed(
    platform: Stack, nats_settings: NatsSettings
) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    settings = platform.setup_settings(namespace)
    asyncio.run(bootstrap(settings))
    asyncio.run(bootstrap(settings))  # a second run changes nothing and does not fail

    async def inspect_streams() -> None:
        nc = await connect(nats_settings, "tests")
        try:
            js = nc.jetstream()
            for spec in STREAMS:
                info = await js.stream_info(subjects.stream_name(spec.name, namespace))
                assert info.config.storage == StorageType.FILE
                assert info.config.subjects == [
                    subjects.subject(s, namespace) for s in spec.subjects
                ]
            # Publishing into the namespace lands in its stream, not the platform's.
            ack = await js.publish(subjects.subject(subjects.IMAGES_STORED, namespace), b"{}")
            assert ack.stream == subjects.stream_name("IMAGES", namespace)
            # The same message id within the duplicate window is stored once.
            first = await js.publish(
                subjects.subject(subjects.IMAGES_STORED, namespace),
                b"{}",
                headers={"Nats-Msg-Id": "dup-1"},
            )
            again = await js.publish(
                subjects.subject(subjects.IMAGES_STORED, namespace),
                b"{}",
                headers={"Nats-Msg-Id": "dup-1"},
            )
            assert again.duplicate
            assert again.seq == first.seq
        finally:
            await nc.drain()

    asyncio.run(inspect_streams())
