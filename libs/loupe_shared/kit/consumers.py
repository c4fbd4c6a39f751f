"""Durable JetStream pull consumers with one shape everywhere: fetch a batch, handle each
message, acknowledge only after the handler succeeded; a message that cannot be parsed goes
to the dead-letter subject with the reason (and is acknowledged so it never blocks the
stream); any other failure is retried later."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import suppress

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from loupe_shared.contracts import subjects
from loupe_shared.kit.logging import get_logger

_log = get_logger("loupe.consumers")
Handler = Callable[[str, bytes], Awaitable[None]]
MALFORMED = (ValidationError, json.JSONDecodeError, KeyError, ValueError)


async def consume(
    js: JetStreamContext,
    *,
    stream: str,
    filter_subject: str,
    durable: str,
    handler: Handler,
    namespace: str = "",
    batch: int = 100,
) -> None:
    """Run until cancelled; a lost stream or connection is retried, never fatal. `handler`
    gets the subject without the namespace."""
    while True:
        try:
            await _consume(js, stream, filter_subject, durable, handler, namespace, batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.warning("consumer.restarting", durable=durable, error=str(exc))
            await asyncio.sleep(1)


async def _consume(
    js: JetStreamContext,
    stream: str,
    filter_subject: str,
    durable: str,
    handler: Handler,
    namespace: str,
    batch: int,
) -> None:
    subscription = await js.pull_subscribe(
        subjects.subject(filter_subject, namespace),
        durable=durable,
        stream=subjects.stream_name(stream, namespace),
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=50,
            ack_wait=30,
        ),
    )
    prefix = f"{namespace}." if namespace else ""
    try:
        while True:
            try:
                messages = await subscription.fetch(batch, timeout=2)
            except TimeoutError:  # nats-py raises its own subclass or the builtin
                continue
            for message in messages:
                try:
                    await handler(message.subject.removeprefix(prefix), message.data)
                except MALFORMED as exc:
                    _log.error(
                        "consumer.malformed_message",
                        durable=durable,
                        subject=message.subject,
                        error=str(exc),
                    )
                    await dead_letter(js, stream, namespace, message, str(exc))
                    await message.ack()
                    continue
                except Exception as exc:  # a dependency is down: leave it for redelivery
                    _log.warning("consumer.handler_failed", durable=durable, error=str(exc))
                    with suppress(Exception):
                        await message.nak(delay=2)
                    continue
                await message.ack()
    finally:
        # Unsubscribed here, so draining the connection on shutdown has nothing to wait for.
        with suppress(Exception):
            await subscription.unsubscribe()


async def dead_letter(
    js: JetStreamContext, stream: str, namespace: str, message: Msg, reason: str
) -> None:
    """Set a message that can never be handled aside, with the reason, on
    `deadletter.<stream>`; the caller then acknowledges it so it never blocks the stream."""
    await js.publish(
        subjects.subject(f"{subjects.DEADLETTER}.{stream.lower()}", namespace),
        message.data,
        headers={"Loupe-Reason": reason[:500], "Loupe-Subject": message.subject},
    )
