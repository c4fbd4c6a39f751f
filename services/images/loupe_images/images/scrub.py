"""The integrity scrub: re-hashes every stored object in time-boxed batches.

A pass walks the 256 hash shards (`blobs/<ab>/`, `status/<ab>/`, `thumbnails/<ab>/`). A blob
must hash to its key; a thumbnail must hash to the SHA-256 its image's status recorded; an
image with a status must have its blob and every thumbnail the status names. A mismatching
object is moved to `quarantine/` (never deleted) and, like a missing one, recorded as a
finding under `integrity/findings/`, published as `integrity.mismatch` and counted in
metrics. A thumbnail is then made again from its (sound) source, and a finding is marked
resolved once its object is sound again. Work runs for `batch_s`, then pauses `pause_s`, so
the scrub never crowds out uploads; the position is saved after each shard.

A pass runs under the lease `images.scrub` (kit.lease), so of several replicas one scrubs at a
time: a pass asked for while another replica runs one is not started. Every replica looks
every `poll_s` whether a pass is due (the last complete one, of any replica, finished
`interval_s` ago) or was left unfinished; a pass whose replica died is resumed from its saved
shard by whichever replica takes the lease once it expired.
"""

import asyncio
import json
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from minio import Minio
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge

from loupe_images.images import storage
from loupe_images.images.thumbnailer import Thumbnailer
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import IntegrityMismatch
from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.lease import Held, LeaseLost, Leases, LeaseTaken
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.tasks import cancel_and_wait

_log = get_logger("images.scrub")
STATE_KEY = "integrity/state.json"
FINDINGS = "integrity/findings/"
SHARDS = [f"{i:02x}" for i in range(256)]
LEASE = "images.scrub"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def finding_key(finding_id: str) -> str:
    return f"{FINDINGS}{finding_id}.json"


@dataclass
class Check:
    """One object to verify."""

    image: str
    object: str  # "blob" or "thumbnail-<size>"
    key: str
    expected: str


class Scrubber:
    def __init__(
        self,
        s3: Minio,
        bucket: str,
        js: JetStreamContext,
        thumbnailer: Thumbnailer,
        leases: Leases,
        *,
        namespace: str,
        registry: CollectorRegistry,
        batch_s: float,
        pause_s: float,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.js = js
        self.thumbnailer = thumbnailer
        self.leases = leases
        self.namespace = namespace
        self.batch_s = batch_s
        self.pause_s = pause_s
        self._task: asyncio.Task[None] | None = None
        self._batch_started = 0.0
        self._interval_s = 0.0
        self._started = time.monotonic()
        self.findings_total = Counter(
            "images_integrity_findings_total",
            "Objects the scrub found corrupt or missing",
            ["object", "problem"],
            registry=registry,
        )
        # Every series from the start, so `increase()` sees the first finding.
        for found in ("blob", "thumbnail"):
            for problem in ("mismatch", "missing"):
                self.findings_total.labels(found, problem)
        self.objects_total = Counter(
            "images_scrub_objects_total", "Objects the scrub re-hashed", registry=registry
        )
        self.bytes_total = Counter(
            "images_scrub_bytes_total", "Bytes the scrub re-hashed", registry=registry
        )
        self.last_pass = Gauge(
            "images_scrub_last_pass_finished_timestamp_seconds",
            "When the last complete scrub pass finished",
            registry=registry,
        )

    # --- state -------------------------------------------------------------------------

    async def _read_json(self, key: str) -> dict[str, Any] | None:
        raw = await asyncio.to_thread(storage.get_bytes, self.s3, self.bucket, key)
        return None if raw is None else dict(json.loads(raw))

    async def _write_json(self, key: str, value: dict[str, Any]) -> None:
        await asyncio.to_thread(
            storage.put_bytes,
            self.s3,
            self.bucket,
            key,
            json.dumps(value).encode(),
            "application/json",
        )

    async def state(self) -> dict[str, Any]:
        found = await self._read_json(STATE_KEY) or {"state": "never run"}
        found["running_here"] = self.running
        return found

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- passes ------------------------------------------------------------------------

    async def start(self, *, if_due: bool = False) -> bool:
        """Start a pass now (`if_due`: only when one is due) unless one is running, here or
        on another replica; answers whether one was started."""
        if self.running:
            return False
        # Whether a pass is due is read before the lease is taken: a replica that only looks
        # must not hold it, or a pass asked for on another replica meanwhile is refused.
        if if_due and not await self.due():
            return False
        try:
            held = await self.leases.acquire(LEASE)
        except LeaseTaken:
            return False
        # Looked at again under the lease: another replica may have just finished the pass.
        if if_due and not await self.due():
            await self.leases.release(held)
            return False
        self._task = asyncio.create_task(self._held_pass(held), name="integrity-scrub")
        return True

    async def _held_pass(self, held: Held) -> None:
        # A lost lease is logged by the kit; the replica that takes it resumes the pass.
        with suppress(LeaseLost):
            await self.leases.hold(held, self._guarded_pass)

    async def wait(self) -> None:
        if self._task is not None:
            with suppress(Exception):
                await asyncio.shield(self._task)

    async def _guarded_pass(self) -> None:
        try:
            await self.run_pass()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.warning("images.scrub_failed", error=str(exc))

    async def due(self) -> bool:
        """A pass was left unfinished, or the last complete one is `interval_s` old (or, never
        having run, this process has been up that long)."""
        state = await self._read_json(STATE_KEY) or {}
        if state.get("state") == "running":
            return True
        finished = (state.get("last_complete") or {}).get("finished_at")
        if finished:
            age = time.time() - datetime.fromisoformat(finished).timestamp()
        else:
            age = time.monotonic() - self._started
        return age >= self._interval_s

    async def run(self, interval_s: float, poll_s: float) -> None:
        """A pass whenever one is due (looked for every `poll_s`), on one replica at a time."""
        self._interval_s = interval_s
        previous = await self._read_json(STATE_KEY)
        # The last complete pass of any process, so a restart does not look like a stale scrub.
        finished = ((previous or {}).get("last_complete") or {}).get("finished_at")
        if finished:
            self.last_pass.set(datetime.fromisoformat(finished).timestamp())
        while True:
            try:
                if await self.start(if_due=True):
                    await self.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the object store or NATS is down: look again later
                _log.warning("images.scrub_not_started", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(poll_s)

    async def run_pass(self) -> dict[str, Any]:
        state = await self._read_json(STATE_KEY) or {}
        if state.get("state") != "running":
            state = {
                "state": "running",
                "pass_id": uuid.uuid4().hex,
                "started_at": _now(),
                "finished_at": None,
                "next_shard": 0,
                "objects": 0,
                "bytes": 0,
                "findings": 0,
                "resolved": 0,
                "last_complete": state.get("last_complete"),
            }
        await self._write_json(STATE_KEY, state)
        known = await self._known_findings()
        self._batch_started = time.monotonic()
        for index in range(int(state["next_shard"]), len(SHARDS)):
            counts = await self._shard(SHARDS[index], state["pass_id"], known)
            for name, value in counts.items():
                state[name] += value
            state["next_shard"] = index + 1
            await self._write_json(STATE_KEY, state)
        state.update(state="done", finished_at=_now())
        state["last_complete"] = {
            k: state[k]
            for k in ("pass_id", "started_at", "finished_at", "objects", "bytes", "findings")
        } | {"resolved": state["resolved"]}
        await self._write_json(STATE_KEY, state)
        self.last_pass.set(time.time())
        _log.info(
            "images.scrub_done",
            pass_id=state["pass_id"],
            objects=state["objects"],
            findings=state["findings"],
        )
        return state

    async def _known_findings(self) -> dict[str, dict[str, Any]]:
        listed = await asyncio.to_thread(
            lambda: list(storage.listing(self.s3, self.bucket, FINDINGS))
        )
        found: dict[str, dict[str, Any]] = {}
        for item in listed:
            value = await self._read_json(item.key)
            if value is not None:
                found[value["id"]] = value
        return found

    async def _pace(self) -> None:
        """Keep each batch of work within `batch_s`, pausing `pause_s` between batches."""
        if time.monotonic() - self._batch_started >= self.batch_s:
            await asyncio.sleep(self.pause_s)
            self._batch_started = time.monotonic()

    async def _shard(
        self, shard: str, pass_id: str, known: dict[str, dict[str, Any]]
    ) -> dict[str, int]:
        def listings() -> tuple[set[str], set[str]]:
            blobs = {
                o.key.rsplit("/", 1)[-1]
                for o in storage.listing(self.s3, self.bucket, f"blobs/{shard}/")
            }
            statuses = {
                o.key.rsplit("/", 1)[-1].removesuffix(".json")
                for o in storage.listing(self.s3, self.bucket, f"status/{shard}/")
            }
            return blobs, statuses

        blobs, statuses = await asyncio.to_thread(listings)
        counts = {"objects": 0, "bytes": 0, "findings": 0, "resolved": 0}
        for sha in sorted(blobs | statuses):
            checks = [Check(sha, "blob", storage.blob_key(sha), sha)]
            if sha in statuses:
                status = await self._read_json(storage.status_key(sha)) or {}
                checks += [
                    Check(sha, f"thumbnail-{t['size']}", t["key"], t["sha256"])
                    for t in status.get("thumbnails", [])
                    if t.get("sha256")
                ]
            for check in checks:
                await self._pace()
                actual = await asyncio.to_thread(
                    storage.hash_object, self.s3, self.bucket, check.key
                )
                finding_id = f"{check.image}-{check.object}"
                if actual is not None:
                    counts["objects"] += 1
                    counts["bytes"] += actual[1]
                    self.objects_total.inc()
                    self.bytes_total.inc(actual[1])
                if actual is not None and actual[0] == check.expected:
                    open_finding = known.get(finding_id)
                    if open_finding is not None and open_finding.get("resolved_at") is None:
                        open_finding["resolved_at"] = _now()
                        await self._write_json(finding_key(finding_id), open_finding)
                        counts["resolved"] += 1
                    continue
                if finding_id in known and known[finding_id].get("resolved_at") is None:
                    continue  # reported already, still open
                if actual is None and not await self._still_stored(sha):
                    break  # deleted while the scrub looked: nothing is missing
                finding = await self._report(check, actual, pass_id)
                known[finding_id] = finding
                counts["findings"] += 1
        return counts

    async def _still_stored(self, sha: str) -> bool:
        status = storage.status_key(sha)
        return await asyncio.to_thread(s3kit.exists, self.s3, self.bucket, status)

    async def _report(
        self, check: Check, actual: tuple[str, int] | None, pass_id: str
    ) -> dict[str, Any]:
        problem = "missing" if actual is None else "mismatch"
        quarantine_key = None
        if actual is not None:
            quarantine_key = f"quarantine/{check.key}.{actual[0][:16]}"
            await asyncio.to_thread(storage.move, self.s3, self.bucket, check.key, quarantine_key)
        repaired = False
        if check.object != "blob":
            # Made again from the source; if the source itself is bad, that is its own
            # finding and no thumbnail comes back.
            image = await asyncio.to_thread(storage.stat, self.s3, self.bucket, check.image)
            if image is not None:
                self.thumbnailer.cache.discard(check.image)
                size = int(check.object.removeprefix("thumbnail-"))
                repaired = await self.thumbnailer.get(image, size) is not None
        finding_id = f"{check.image}-{check.object}"
        finding: dict[str, Any] = {
            "id": finding_id,
            "image_sha256": check.image,
            "object": check.object,
            "key": check.key,
            "problem": problem,
            "expected_sha256": check.expected,
            "actual_sha256": None if actual is None else actual[0],
            "quarantine_key": quarantine_key,
            "repaired": repaired,
            "found_at": _now(),
            "pass_id": pass_id,
            "resolved_at": _now() if repaired else None,
        }
        await self._write_json(finding_key(finding_id), finding)
        self.findings_total.labels(check.object.split("-")[0], problem).inc()
        event = IntegrityMismatch(
            event_id=f"integrity.{finding_id}.{pass_id}",
            key=check.key,
            expected_sha256=check.expected,
            actual_sha256=finding["actual_sha256"],
            problem=cast(Any, problem),
            image_sha256=check.image,
            object=check.object,
            quarantine_key=quarantine_key,
            repaired=repaired,
        )
        await self.js.publish(
            subjects.subject(subjects.INTEGRITY_MISMATCH, self.namespace),
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": event.event_id},
        )
        _log.warning(
            "images.integrity_finding",
            key=check.key,
            problem=problem,
            quarantine_key=quarantine_key,
            repaired=repaired,
        )
        return finding

    async def findings(self, limit: int, after: str | None) -> tuple[list[dict[str, Any]], bool]:
        """Findings in id order after the id `after`; answers them and whether more follow."""
        start_after = finding_key(after) if after else None

        def page() -> list[str]:
            keys = []
            for item in storage.listing(self.s3, self.bucket, FINDINGS, start_after):
                keys.append(item.key)
                if len(keys) > limit:
                    break
            return keys

        keys = await asyncio.to_thread(page)
        found = [f for f in [await self._read_json(k) for k in keys[:limit]] if f is not None]
        return found, len(keys) > limit

    async def close(self) -> None:
        """Stop a pass running here (its lease is released; another replica resumes it)."""
        if self._task is not None:
            await cancel_and_wait([self._task])
