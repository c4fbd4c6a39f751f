"""Warm the caches: the masters of active programs when a worker starts, and the master of
each new revision as it is announced (`programs.revised`)."""

import asyncio
import uuid
from contextlib import suppress

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from loupe_inspect.caches import MasterCache
from loupe_inspect.inspector import Inspector
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ProgramRevised
from loupe_shared.kit.logging import get_logger

_log = get_logger("inspect.preload")


async def active_programs(inspector: Inspector) -> None:
    """Load current revisions and their masters, most recently changed first, while the
    master cache has room. Failures are logged: a cold cache only costs time."""
    try:
        programs = await inspector.catalog.active_masters()
    except Exception as exc:
        _log.warning("inspect.preload_failed", error=str(exc))
        return
    loaded = 0
    for program_id, revision, sha256 in programs:
        if sha256 not in inspector.masters and not _room(inspector.masters):
            break
        with suppress(Exception):
            await inspector.revision(program_id, revision)
            await inspector.master(sha256)
            loaded += 1
    _log.info("inspect.preloaded", programs=loaded, cache_bytes=inspector.masters.bytes)


def _room(masters: MasterCache) -> bool:
    return masters.bytes < masters.max_bytes * 0.9


async def follow_revisions(nc: Client, inspector: Inspector, namespace: str) -> Subscription:
    pending: set[asyncio.Task[None]] = set()

    async def warm(event: ProgramRevised) -> None:
        with suppress(Exception):
            await inspector.revision(uuid.UUID(event.program_id), event.revision)
            if event.master_image_sha256:
                await inspector.master(event.master_image_sha256)

    async def on_revised(message: Msg) -> None:
        try:
            event = ProgramRevised.model_validate_json(message.data)
        except ValidationError:
            return
        task = asyncio.create_task(warm(event))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return await nc.subscribe(subjects.subject(subjects.PROGRAMS_REVISED, namespace), cb=on_revised)
