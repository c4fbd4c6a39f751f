"""Answers the images service's deletion claims (core NATS request/reply, queue group
`catalog`, so any number of catalog replicas share the work)."""

from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from loupe_catalog.image_records import repository
from loupe_catalog.results.ingest import DURABLE as INGEST_DURABLE
from loupe_shared.contracts import subjects
from loupe_shared.contracts.rpc import (
    ImageClaimReply,
    ImageClaimRequest,
    TombstonesReply,
    TombstonesRequest,
)
from loupe_shared.kit.logging import get_logger

_log = get_logger("catalog.image_claims")
# Collection waits while the results ingest lags more than this behind.
MAX_INGEST_LAG_S = 60.0


async def _ingest_lag_s(js: JetStreamContext, namespace: str) -> float:
    """How long the oldest result message not yet stored has waited (0: none waits). Those
    messages may reference captures."""
    stream = subjects.stream_name("RESULTS", namespace)
    try:
        info = await js.consumer_info(stream, INGEST_DURABLE)
    except NotFoundError:
        return 0.0
    if not (info.num_pending or info.num_ack_pending):
        return 0.0
    floor = info.ack_floor.stream_seq if info.ack_floor else 0
    try:
        oldest = await js.get_msg(stream, floor + 1)
    except NotFoundError:
        return 0.0
    if oldest.time is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - oldest.time).total_seconds())


async def serve(
    nc: Client, js: JetStreamContext, engine: AsyncEngine, namespace: str
) -> list[Subscription]:
    async def claims(msg: Msg) -> None:
        try:
            request = ImageClaimRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            await msg.respond(ImageClaimReply(error=str(exc)).model_dump_json().encode())
            return
        if request.reason == "gc" and not request.force:
            try:
                lag_s = await _ingest_lag_s(js, namespace)
            except Exception as exc:
                _log.warning("image_claims.ingest_lag_unknown", error=str(exc))
                lag_s = float("inf")
            if lag_s > MAX_INGEST_LAG_S:
                # Results still on their way may reference these captures: collect later.
                await msg.respond(
                    ImageClaimReply(deferred=request.sha256).model_dump_json().encode()
                )
                return
        try:
            async with engine.begin() as conn:
                granted, referenced = await repository.claim_deletion(
                    conn,
                    request.sha256,
                    reason=request.reason,
                    claimed_by=request.claimed_by,
                    force=request.force,
                    dry_run=request.dry_run,
                )
            reply = ImageClaimReply(granted=granted, referenced=referenced)
        except Exception as exc:  # the asker must hear about it, and must not delete
            _log.error("image_claims.failed", error=str(exc))
            reply = ImageClaimReply(error="the catalog could not check the references")
        if granted := reply.granted:
            _log.info(
                "image_claims.granted",
                count=len(granted),
                reason=request.reason,
                force=request.force,
                dry_run=request.dry_run,
            )
        await msg.respond(reply.model_dump_json().encode())

    async def tombstones(msg: Msg) -> None:
        try:
            request = TombstonesRequest.model_validate_json(msg.data)
            async with engine.begin() as conn:
                found = await repository.stale_tombstones(conn, request.older_than_s, request.limit)
            reply = TombstonesReply(sha256=found)
        except ValidationError as exc:
            reply = TombstonesReply(error=str(exc))
        except Exception as exc:
            _log.error("image_tombstones.failed", error=str(exc))
            reply = TombstonesReply(error="the catalog could not list the claims")
        await msg.respond(reply.model_dump_json().encode())

    return [
        await nc.subscribe(
            subjects.subject(subjects.RPC_IMAGE_CLAIMS, namespace), queue="catalog", cb=claims
        ),
        await nc.subscribe(
            subjects.subject(subjects.RPC_IMAGE_TOMBSTONES, namespace),
            queue="catalog",
            cb=tombstones,
        ),
    ]
