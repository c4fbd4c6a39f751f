"""Reading a namespace's streams back, simple results, and waiting inside async tests."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from loupe_shared.contracts.results import ResultBatch
from loupe_shared.contracts.subjects import RESULTS_RECORDED, stream_name, subject
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings


@dataclass(frozen=True)
class Stored:
    headers: dict[str, str]
    data: bytes


async def read_stream(
    settings: NatsSettings, namespace: str, stream: str, name: str
) -> list[Stored]:
    """Every message on subject `name` of `stream` in `namespace`, in stream order."""
    nc = await connect(settings, "tests-line-reader")
    try:
        js = nc.jetstream()
        full = stream_name(stream, namespace)
        total = (await js.stream_info(full)).state.messages
        sub = await js.pull_subscribe(
            subject(name, namespace),
            stream=full,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
        )
        out: list[Stored] = []
        while len(out) < total:
            for msg in await sub.fetch(min(256, total - len(out)), timeout=5):
                out.append(Stored(dict(msg.headers or {}), msg.data))
        return out
    finally:
        # close(), not drain(): drain hangs on a pull subscription whose fetch timed out.
        await nc.close()


async def read_batches(
    settings: NatsSettings, namespace: str
) -> list[tuple[dict[str, str], ResultBatch]]:
    messages = await read_stream(settings, namespace, "RESULTS", RESULTS_RECORDED)
    return [(m.headers, ResultBatch.model_validate_json(m.data)) for m in messages]


def result_ids(batches: list[tuple[dict[str, str], ResultBatch]]) -> list[str]:
    return [str(r.result_id) for _, batch in batches for r in batch.results]


def new_result(line_id: str = "L1", **extra: Any) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line_id,
        "verdict": "pass",
        "captured_at": datetime.now(UTC).isoformat(),
        **extra,
    }
