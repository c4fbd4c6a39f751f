"""Answers `rpc.inspect.evaluate` (a queue group of all workers): inspect one stored capture
with one revision and answer the result without publishing it. The catalog uses it to run a
revision over its golden set."""

import uuid
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from loupe_inspect.inspector import Inspector
from loupe_shared.contracts import subjects
from loupe_shared.contracts.inspect import EvaluationReply, EvaluationRequest
from loupe_shared.contracts.results import InspectionRequest
from loupe_shared.kit.logging import get_logger

_log = get_logger("inspect.rpc")
QUEUE = "inspect-evaluate"
GOLDEN_LINE = "golden-set"


async def serve(nc: Client, inspector: Inspector, namespace: str) -> Subscription:
    async def answer(message: Msg) -> None:
        try:
            asked = EvaluationRequest.model_validate_json(message.data)
        except ValidationError as exc:
            reply = EvaluationReply(error=f"not an evaluation request: {exc.errors()[0]['msg']}")
        else:
            request = InspectionRequest(
                request_id=uuid.uuid4(),
                line_id=GOLDEN_LINE,
                program_id=asked.program_id,
                program_revision=asked.program_revision,
                capture_sha256=asked.capture_sha256,
                captured_at=datetime.now(UTC),
                is_simulated=True,
            )
            try:
                reply = EvaluationReply(result=await inspector.handle(request))
            except Exception as exc:
                _log.warning("inspect.evaluate_failed", error=str(exc))
                reply = EvaluationReply(error=str(exc) or type(exc).__name__)
        if message.reply:
            await message.respond(reply.model_dump_json(exclude_none=True).encode())

    return await nc.subscribe(
        subjects.subject(subjects.RPC_INSPECT_EVALUATE, namespace), queue=QUEUE, cb=answer
    )
