"""The worker: one member of the durable pull consumer every inspection worker shares on
`inspection.requested`, so each request is handled by one of them.

A worker fetches only as many requests as it has free slots (`concurrency`), so requests are
spread over the workers instead of queueing behind a busy one. Each request ends acknowledged
with a published result, except:
- a message that is not an inspection request goes to `deadletter.inspection` at once;
- a passing failure (catalog or object store down, a bug) is delivered again after a delay,
  and after `max_deliveries` it gets an `error` result and goes to the dead-letter subject.
A request delivered more often than that (a worker died on it each time) is set aside before
it is tried again, so one poison message cannot take the workers down one by one. Dead
letters go through the kit (`consumer_dead_lettered_total{consumer,reason}`, the
`consumer.dead_lettered` log line)."""

import asyncio
from contextlib import suppress

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from loupe_inspect.inspector import Inspector
from loupe_inspect.metrics import WorkerMetrics
from loupe_shared.contracts import subjects
from loupe_shared.contracts.inspect import InspectedResult
from loupe_shared.contracts.results import RESULT_SCHEMA_VERSION, InspectionRequest
from loupe_shared.kit.consumers import is_passing
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.tasks import supervise

_log = get_logger("inspect.worker")
STREAM = "INSPECTION"
# Seconds a fetched request may stay unacknowledged beyond the time limit (by default): a
# worker that died holding it, it goes to another worker after time limit + slack.
ACK_SLACK_S = 30.0


class Worker:
    def __init__(
        self,
        js: JetStreamContext,
        inspector: Inspector,
        metrics: WorkerMetrics,
        *,
        namespace: str,
        durable: str,
        concurrency: int,
        max_deliveries: int,
        retry_delay_s: float,
        ack_slack_s: float = ACK_SLACK_S,
    ) -> None:
        self.js = js
        self.inspector = inspector
        self.metrics = metrics
        self.namespace = namespace
        self.durable = durable
        self.concurrency = max(1, concurrency)
        self.max_deliveries = max(1, max_deliveries)
        self.retry_delay_s = retry_delay_s
        self.ack_slack_s = ack_slack_s
        self.running = False

    async def run(self) -> None:
        """Run until cancelled; a lost stream or connection is retried, never fatal."""
        await supervise(self._run, event="inspect.consumer_restarting", on_failure=self._stopped)

    def _stopped(self) -> None:
        self.running = False

    async def _run(self) -> None:
        subscription = await self.js.pull_subscribe(
            subjects.subject(subjects.INSPECTION_REQUESTED, self.namespace),
            durable=self.durable,
            stream=subjects.stream_name(STREAM, self.namespace),
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.inspector.time_limit_s + self.ack_slack_s,
                max_deliver=-1,  # counted here, so the last delivery can be set aside
            ),
        )
        self.running = True
        _log.info("inspect.consumer_started", durable=self.durable, concurrency=self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                free = self.concurrency - len(tasks)
                if free <= 0:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    messages = await subscription.fetch(free, timeout=1)
                except TimeoutError:  # nats-py raises its own subclass or the builtin one
                    continue
                for message in messages:
                    task = asyncio.create_task(self._handle(message))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            self.running = False
            # In-flight requests are finished (bounded by the time limit) before leaving;
            # the rest are redelivered to another worker.
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.inspector.time_limit_s)
                for task in pending:
                    task.cancel()
            with suppress(Exception):
                await subscription.unsubscribe()

    async def _handle(self, message: Msg) -> None:
        self.metrics.in_flight.inc()
        try:
            with self.metrics.seconds.time():
                await self._inspect(message)
        except Exception as exc:  # never let one request end the loop
            _log.error("inspect.handle_failed", error=str(exc))
        finally:
            self.metrics.in_flight.dec()

    async def _inspect(self, message: Msg) -> None:
        delivered = message.metadata.num_delivered or 1
        try:
            request = InspectionRequest.model_validate_json(message.data)
        except ValidationError as exc:
            reason = f"not an inspection request: {exc.errors()[0].get('msg', exc)}"
            await self._set_aside(message, reason, "malformed")
            return
        except Exception as exc:  # anything the model's parser did not foresee
            await self._set_aside(message, f"not an inspection request: {exc!r}", "malformed")
            return
        log = _log.bind(request_id=str(request.request_id), delivered=delivered)
        if delivered > self.max_deliveries:
            reason = (
                f"delivered {delivered} times without an outcome (a worker may have died on it)"
            )
            await self._give_up(message, request, reason, "redelivered")
            return
        try:
            result = await self.inspector.handle(request)
            await self.publish(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if delivered >= self.max_deliveries:
                await self._give_up(
                    message, request, f"gave up after {delivered} attempts: {exc}", "failed"
                )
                return
            log.warning("inspect.retry_later", error=str(exc))
            self.metrics.retries.inc()
            with suppress(Exception):
                await message.nak(delay=self.retry_delay_s)
            return
        await message.ack()
        self.metrics.results.labels(result.verdict).inc()
        log.info(
            "inspect.inspected",
            verdict=result.verdict,
            defects=len(result.defects),
            processing_ms=result.processing_ms,
        )

    async def _give_up(
        self, message: Msg, request: InspectionRequest, reason: str, kind: str
    ) -> None:
        """An `error` result for the line, then the dead letter. A request whose error result
        cannot be made or published (for a reason of its own, not NATS away) is set aside
        all the same, so it cannot come back forever."""
        _log.error("inspect.gave_up", request_id=str(request.request_id), reason=reason)
        try:
            await self.publish(self.inspector.error(request, reason))
        except Exception as exc:
            if is_passing(exc):
                raise
            reason = f"{reason}; no error result: {exc!r}"
        else:
            self.metrics.results.labels("error").inc()
        await self._set_aside(message, reason, kind)

    async def _set_aside(self, message: Msg, reason: str, kind: str) -> None:
        await self.metrics.dead_letters.set_aside(
            self.js,
            message,
            stream=STREAM,
            namespace=self.namespace,
            consumer=self.durable,
            reason=reason,
            kind=kind,
        )

    async def publish(self, result: InspectedResult) -> None:
        """Publish one result as a batch (the worker's own fields kept)."""
        body = (
            b'{"schema_version":%d,"results":[' % RESULT_SCHEMA_VERSION
            + result.model_dump_json(exclude_none=True).encode()
            + b"]}"
        )
        await self.js.publish(
            subjects.subject(subjects.RESULTS_RECORDED, self.namespace),
            body,
            headers={"Nats-Msg-Id": f"inspect-{result.result_id}"},
        )
