"""Deleting blobs: on request (refused while a program revision references the image, unless
an admin forces it) and by the garbage collector (unreferenced blobs older than a grace
period).

Every deletion first claims the image from the catalog (NATS request/reply), which re-checks
the references under a lock a program save also takes: a blob is deleted only after the
catalog granted the claim, and once granted no save can reference it until the deletion is
announced (`images.deleted`). A deleter stopped between claim and announcement leaves a stale
claim, which the next collection finishes.

A collection runs under the lease `images.gc` (kit.lease): of several replicas one collects at
a time, and a collection asked for while another replica runs one is refused (409). Every
replica looks every `poll_s` whether a background collection is due: the last one, of any
replica, finished `interval_s` ago (`gc/state.json`).
"""

import asyncio
import json
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from minio import Minio
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter

from loupe_images.images import storage
from loupe_images.images.thumbnailer import Thumbnailer
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ImageDeleted
from loupe_shared.contracts.rpc import (
    MAX_CLAIM,
    ImageClaimReply,
    ImageClaimRequest,
    TombstonesReply,
    TombstonesRequest,
)
from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.lease import Leases, LeaseTaken
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("images.deletion")
HOST = socket.gethostname()
LEASE = "images.gc"
STATE_KEY = "gc/state.json"


def _catalog_unreachable() -> Problem:
    return Problem(
        503,
        "The catalog cannot be reached to check the image's references; nothing was deleted.",
        headers={"Retry-After": "5"},
    )


@dataclass
class Deleter:
    s3: Minio
    bucket: str
    nc: Client
    js: JetStreamContext
    thumbnailer: Thumbnailer
    namespace: str
    registry: CollectorRegistry
    leases: Leases
    timeout_s: float = 10.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.deleted = Counter(
            "images_deleted_total",
            "Image blobs deleted, by reason (delete, force, gc)",
            ["reason"],
            registry=self.registry,
        )

    async def _ask(self, subject: str, payload: bytes) -> bytes:
        try:
            reply = await self.nc.request(
                subjects.subject(subject, self.namespace), payload, timeout=self.timeout_s
            )
        except (NoRespondersError, TimeoutError):
            raise _catalog_unreachable() from None
        return reply.data

    async def claim(
        self, shas: list[str], *, reason: str, force: bool = False, dry_run: bool = False
    ) -> ImageClaimReply:
        request = ImageClaimRequest(
            sha256=shas,
            reason=cast(Any, reason),
            claimed_by=f"images@{HOST}",
            force=force,
            dry_run=dry_run,
        )
        reply = ImageClaimReply.model_validate_json(
            await self._ask(subjects.RPC_IMAGE_CLAIMS, request.model_dump_json().encode())
        )
        if reply.error:
            _log.warning("images.claim_refused", error=reply.error)
            raise _catalog_unreachable()
        return reply

    async def remove(
        self, sha256: str, *, forced: bool, reason: str, request_id: str | None = None
    ) -> None:
        """Remove a claimed image (thumbnails and status first, the blob last) and announce
        it. Safe to repeat."""
        prefix = f"thumbnails/{sha256[:2]}/{sha256}/"
        keys = [
            found.key
            for found in await asyncio.to_thread(
                lambda: list(storage.listing(self.s3, self.bucket, prefix))
            )
        ]
        for key in [*keys, storage.status_key(sha256), storage.blob_key(sha256)]:
            await asyncio.to_thread(s3kit.remove, self.s3, self.bucket, key)
        self.thumbnailer.cache.discard(sha256)
        event = ImageDeleted(
            event_id=f"images.deleted.{sha256}.{uuid.uuid4().hex}",
            sha256=sha256,
            forced=forced,
            reason=reason,
            request_id=request_id,
        )
        await self.js.publish(
            subjects.subject(subjects.IMAGES_DELETED, self.namespace),
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": event.event_id},
        )
        self.deleted.labels("force" if forced else reason).inc()
        _log.info("images.deleted", sha256=sha256, forced=forced, reason=reason)

    async def delete(self, sha256: str, *, force: bool, request_id: str | None) -> ImageClaimReply:
        """Delete one image on request: answers the claim (granted, or refused with the
        referencing revisions)."""
        reply = await self.claim([sha256], reason="delete", force=force)
        if sha256 in reply.granted:
            await self.remove(sha256, forced=force, reason="delete", request_id=request_id)
        return reply

    async def collect(
        self, *, grace_s: float, dry_run: bool = False, limit: int = 100_000
    ) -> dict[str, Any]:
        """One garbage collection: finish interrupted deletions, then claim and delete blobs
        older than `grace_s` that nothing references. One collection at a time, of all
        replicas (a dry run, which deletes nothing, of this one)."""
        if dry_run:
            return await self._locked(grace_s, dry_run, limit)
        try:
            return await self.leases.run(LEASE, lambda: self._locked(grace_s, dry_run, limit))
        except LeaseTaken:
            raise Problem(
                409,
                "A collection is running on another replica; try again once it has finished.",
                headers={"Retry-After": "30"},
            ) from None

    async def _locked(self, grace_s: float, dry_run: bool, limit: int) -> dict[str, Any]:
        async with self._lock:
            summary = await self._collect(grace_s, dry_run, limit)
        if not dry_run:
            finished = {"finished_at": datetime.now(UTC).isoformat()}
            await asyncio.to_thread(
                storage.put_bytes,
                self.s3,
                self.bucket,
                STATE_KEY,
                json.dumps(finished).encode(),
                "application/json",
            )
        return summary

    async def _collect(self, grace_s: float, dry_run: bool, limit: int) -> dict[str, Any]:
        started = time.monotonic()
        resumed: list[str] = []
        if not dry_run:
            stale = TombstonesReply.model_validate_json(
                await self._ask(
                    subjects.RPC_IMAGE_TOMBSTONES,
                    TombstonesRequest(older_than_s=60).model_dump_json().encode(),
                )
            )
            if stale.error:
                raise _catalog_unreachable()
            for sha in stale.sha256:
                await self.remove(sha, forced=False, reason="gc")
                resumed.append(sha)
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
        listed = await asyncio.to_thread(
            lambda: list(storage.listing(self.s3, self.bucket, "blobs/"))
        )
        sizes = {
            found.key.rsplit("/", 1)[-1]: found.size
            for found in listed
            if found.last_modified is not None and found.last_modified <= cutoff
        }
        candidates = list(sizes)[:limit]
        collected: list[str] = []
        referenced = 0
        deferred = 0
        for start in range(0, len(candidates), MAX_CLAIM):
            batch = candidates[start : start + MAX_CLAIM]
            reply = await self.claim(batch, reason="gc", dry_run=dry_run)
            referenced += len(reply.referenced)
            deferred += len(reply.deferred)
            for sha in reply.granted:
                if not dry_run:
                    await self.remove(sha, forced=False, reason="gc")
                collected.append(sha)
        summary = {
            "dry_run": dry_run,
            "grace_s": grace_s,
            "examined": len(listed),
            "older_than_grace": len(candidates),
            "referenced": referenced,
            "deferred": deferred,
            "collected": len(collected),
            "collected_bytes": sum(sizes[sha] for sha in collected),
            "collected_sha256": collected[:1000],
            "resumed": resumed,
            "seconds": round(time.monotonic() - started, 3),
        }
        _log.info(
            "images.gc_done",
            **{k: v for k, v in summary.items() if k not in ("collected_sha256", "resumed")},
        )
        return summary

    async def due(self, interval_s: float) -> bool:
        """The last collection of any replica finished `interval_s` ago (or, none having
        finished, this process has been up that long)."""
        raw = await asyncio.to_thread(storage.get_bytes, self.s3, self.bucket, STATE_KEY)
        try:
            finished = datetime.fromisoformat(json.loads(raw or b"{}")["finished_at"])
            age = (datetime.now(UTC) - finished).total_seconds()
        except (ValueError, KeyError, TypeError):
            age = time.monotonic() - self._started
        return age >= interval_s

    async def run(self, *, interval_s: float, grace_s: float, poll_s: float) -> None:
        """Collect whenever a collection is due (looked for every `poll_s`), on one replica at
        a time, until cancelled; a failed round is logged and tried again."""
        await self.leases.periodically(
            LEASE,
            lambda: self._locked(grace_s, False, 100_000),
            due=lambda: self.due(interval_s),
            poll_s=poll_s,
            event="images.gc_failed",
        )
