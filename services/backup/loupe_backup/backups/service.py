"""The backup service's work: backup jobs, verification, restores and deletion, with their
records in the backup bucket, their events on NATS and their metrics.

Interrupted jobs, with several replicas. Every backup set and restore runs under a lease of
its own (`backup.jobs.<id>`, `backup.restores.<id>`, see kit.lease), taken before its record
is first saved as running and given up only after its final record is saved; a job whose
lease is lost is cancelled (and marked failed by itself). So a record that says `running`
belongs to a live process exactly as long as its lease is live, and the rule is:

    a running record is interrupted when its own lease is absent or has expired;

never because the replica looking at it does not run it. One replica at a time looks (the
sweep, under the lease `backup.interrupted`, every `LEASE_TTL_S / 3` and at start-up). It
reads the job's lease *first* and the record *after*, and marks only a record still running:
a job that ends saves its record before releasing its lease, so a lease seen gone means a
record read after it is final — unless the job died. An expired lease is seen as such only
after the sweeper watched the same revision for the lease's TTL (or its wall-clock expiry is
a TTL past), by which time its holder, if alive, has cancelled the job. An interrupted set is
failed, announced (`backup.failed`) and counted like any failed set. Lists shown by any
replica show a running set as failed only by the same rule (or when its record went
`BACKUP_STALE_AFTER_S` without an update).
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast, get_args

import asyncpg
from minio import Minio
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from loupe_backup.backups import archive, compatibility, database, layout, objects
from loupe_backup.backups.creator import BackupCreator, Copier, list_backup_blobs
from loupe_backup.backups.manifest import BackedToken, Include, Kind, Manifest
from loupe_backup.backups.progress import ProgressReporter
from loupe_backup.backups.records import BackupRecord, Compatibility, RestoreRecord, now
from loupe_backup.backups.restorer import Restorer, RestoreRefused, new_workdir
from loupe_backup.backups.schemas import BackupShown, RestorePlan
from loupe_backup.backups.store import CorruptManifest, RecordStore
from loupe_backup.backups.verifier import verify
from loupe_backup.settings import BackupSettings
from loupe_shared import __version__
from loupe_shared.contracts import subjects
from loupe_shared.contracts.backup import BACKUP_FORMAT_VERSION, MaintenanceNotice
from loupe_shared.contracts.events import BackupFinished
from loupe_shared.contracts.streams import MAINTENANCE_BUCKET, TOKENS_BUCKET
from loupe_shared.kit import db, maintenance
from loupe_shared.kit.audit import Actor, audit_actor, publish_audit
from loupe_shared.kit.auth import Principal, TokenRecord, TokenStore
from loupe_shared.kit.lease import Held, LeaseLost, Leases, LeaseTaken
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.tasks import cancel_and_wait

_log = get_logger("backup.service")
_REVISIONS_TTL_S = 5.0
# The longest a reader waits for a set to finish (`GET /api/backups/{id}?wait=`), and how often
# a set another replica runs is looked at meanwhile.
MAX_WAIT_S = 30.0
FINISHED_RECHECK_S = 0.25
SWEEP_LEASE = "backup.interrupted"
# Held by the one restore running anywhere (besides its own lease): a restore on another
# replica is refused while it is held.
RESTORE_LEASE = "backup.restore"


# The name the snapshot's kept database connection shows in pg_stat_activity.
SNAPSHOT_CONNECTION = "loupe-backup-snapshot"


def job_lease(backup_id: str) -> str:
    return f"backup.jobs.{backup_id}"


def restore_lease(restore_id: str) -> str:
    return f"backup.restores.{restore_id}"


def _new_backup_id() -> str:
    """Sortable by creation time, unique by its random tail."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


class Busy(Exception):
    pass


def describe(exc: BaseException) -> str:
    """The first real error inside task groups, as `Type: message`."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


class BackupMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.backups = Counter(
            "backup_sets_total",
            "Backup sets finished, by kind and outcome",
            ["kind", "status", "scheduled"],
            registry=registry,
        )
        # Every series from the start, so `increase()` sees the first failure.
        for kind in get_args(Kind):
            for status in ("completed", "failed"):
                for scheduled in ("true", "false"):
                    self.backups.labels(kind, status, scheduled)
        self.bytes_copied = Counter(
            "backup_bytes_copied_total", "Bytes copied into the backup bucket", registry=registry
        )
        self.restores = Counter(
            "backup_restores_total", "Restores finished, by outcome", ["status"], registry=registry
        )
        # Set from the records at start-up too, so a restart does not look like a lost backup.
        self.last_success = Gauge(
            "backup_last_success_timestamp_seconds",
            "When the newest completed backup set of each kind finished",
            ["kind"],
            registry=registry,
        )
        self.last_size = Gauge(
            "backup_last_success_size_bytes",
            "Bytes the newest completed backup set of each kind holds (database and blobs)",
            ["kind"],
            registry=registry,
        )
        self.duration = Histogram(
            "backup_duration_seconds",
            "Time from starting a backup set to its end, by kind and outcome",
            ["kind", "status"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200),
            registry=registry,
        )
        self.verifications = Counter(
            "backup_verifications_total",
            "Verifications of backup sets, by outcome (ok, failed: a file or blob missing or "
            "not matching its SHA-256)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("ok", "failed"):
            self.verifications.labels(outcome)
        self._newest: dict[str, float] = {}

    def finished(self, record: BackupRecord) -> None:
        """A set that finished (now, or before a restart): its kind's newest success."""
        if record.status != "completed" or record.finished_at is None:
            return
        at = record.finished_at.timestamp()
        if at >= self._newest.get(record.kind, 0.0):
            self._newest[record.kind] = at
            self.last_success.labels(record.kind).set(at)
            self.last_size.labels(record.kind).set(record.progress.bytes_total)


class BackupService:
    def __init__(
        self,
        settings: BackupSettings,
        s3: Minio,
        nc: Client,
        js: JetStreamContext,
        registry: CollectorRegistry,
        leases: Leases,
    ) -> None:
        self.settings = settings
        self.leases = leases
        self.s3 = s3
        self.nc = nc
        self.js = js
        self.store = RecordStore(s3, settings.backup_bucket)
        self.executor = ThreadPoolExecutor(settings.copy_concurrency, "backup-copy")
        self.copier = Copier(self.executor, settings.copy_concurrency)
        self.creator = BackupCreator(settings, s3, self.copier, self._snapshot_connection)
        self.restorer = Restorer(settings, s3, self.copier)
        self.tokens = TokenStore(js, subjects.stream_name(TOKENS_BUCKET, settings.namespace))
        self.metrics = BackupMetrics(registry)
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self.restore_task: asyncio.Task[None] | None = None
        self._collect_lock = asyncio.Lock()
        self._revisions: tuple[float, list[str]] | None = None
        self._draining = asyncio.Event()
        # The manifest of the last set this replica completed, with its id and checksum: the
        # next incremental's parent, most of the time, which then need not be read and parsed
        # again (for 2,000 objects that was a fifth of an unchanged incremental's work).
        self._last_manifest: tuple[str, str, Manifest] | None = None
        # Connections for the snapshots, kept between backups (made on the first one).
        self._snapshots: asyncpg.Pool | None = None
        self._snapshots_lock = asyncio.Lock()

    @property
    def maintenance_bucket(self) -> str:
        return subjects.stream_name(MAINTENANCE_BUCKET, self.settings.namespace)

    async def start(self) -> None:
        await maintenance.open_bucket(self.js, self.maintenance_bucket)
        for record in await self.store.all():
            self.metrics.finished(record)

    async def sweep_interrupted(self, poll_s: float) -> None:
        """Mark interrupted jobs failed (see the module's account) every `poll_s`, on the one
        replica that holds the sweep's lease, until cancelled."""

        async def sweeping() -> None:
            while True:
                try:
                    await self.mark_interrupted()
                except Exception as exc:
                    _log.warning("backup.sweep_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(poll_s)

        await self.leases.lead(SWEEP_LEASE, sweeping, poll_s=poll_s, event="backup.sweep_failed")

    async def _job_live(self, lease: str) -> bool:
        return (await self.leases.observe(lease)).state == "live"

    def _ours(self, record: BackupRecord | RestoreRecord) -> bool:
        """Whether this installation runs the job: another one sharing the backup bucket (a
        restore into a new installation) keeps its leases in its own namespace."""
        return record.run_by_namespace in (None, self.settings.namespace)

    async def mark_interrupted(self) -> list[str]:
        """Running sets and restores whose own lease is gone or expired, marked failed."""
        marked: list[str] = []
        for found in await self.store.all():
            if found.status != "running" or found.id in self.jobs or not self._ours(found):
                continue
            if await self._job_live(job_lease(found.id)):
                continue
            # Read after the lease: a job that ended saved its final record before it let go.
            record = await self.store.get(found.id)
            if record is None or record.status != "running" or record.id in self.jobs:
                continue
            record.status = "failed"
            record.error = "interrupted: the backup service running it stopped during the backup"
            record.finished_at = now()
            await self.store.save(record)
            self._count(record)
            await self._publish(subjects.BACKUP_FAILED, record)
            _log.warning("backup.interrupted", backup_id=record.id)
            marked.append(record.id)
        running_here = self.restore_task is not None and not self.restore_task.done()
        for seen in await self.store.restores():
            if seen.status != "running" or running_here or not self._ours(seen):
                continue
            if await self._job_live(restore_lease(seen.id)):
                continue
            restore = await self.store.get_restore(seen.id)
            if restore is None or restore.status != "running":
                continue
            restore.status = "failed"
            restore.error = (
                "interrupted: the backup service stopped during the restore; its "
                "transaction was never committed, so nothing of it was kept"
            )
            restore.finished_at = now()
            await self.store.save_restore(restore)
            _log.warning("restore.interrupted", restore_id=restore.id)
            marked.append(restore.id)
        return marked

    async def close(self) -> None:
        tasks = [*self.jobs.values(), *([self.restore_task] if self.restore_task else [])]
        await cancel_and_wait(tasks)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._snapshots is not None:
            try:
                async with asyncio.timeout(5):
                    await self._snapshots.close()
            except TimeoutError:
                self._snapshots.terminate()

    @asynccontextmanager
    async def _snapshot_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A kept connection for a backup's snapshot; one the server dropped while it was kept
        (a restarted database) is replaced, not handed out."""
        async with self._snapshots_lock:
            if self._snapshots is None:
                self._snapshots = await db.create_kept_pool(self.settings, SNAPSHOT_CONNECTION, 2)
        pool = self._snapshots
        for attempt in (1, 2):
            async with pool.acquire() as conn:
                try:
                    await conn.execute("SELECT 1")
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    if attempt == 2:
                        raise
                    await pool.expire_connections()
                    continue
                # The pool's proxy forwards every call to the connection it holds.
                yield cast(asyncpg.Connection, conn)
                return

    async def audit(self, actor: Actor, action: str, target: str, /, **details: Any) -> None:
        """`audit.recorded` for what `actor` did (the catalog appends it to the audit log)."""
        await audit_actor(
            self.js,
            actor,
            action=action,
            target=target,
            namespace=self.settings.namespace,
            details=details,
        )

    # --- records -----------------------------------------------------------------------------

    async def record(self, backup_id: str) -> BackupRecord | None:
        return await self.store.get(backup_id)

    async def restore_record(self, restore_id: str) -> RestoreRecord | None:
        return await self.store.get_restore(restore_id)

    def is_completed(self, record: BackupRecord) -> bool:
        """Completed, and not a running set shown as completed (it never is)."""
        return (
            record.shown_status(self.settings.stale_after_s) == "completed"
            and record.status != "running"
        )

    # --- backups -----------------------------------------------------------------------------

    async def create(
        self,
        kind: Kind,
        include: Include,
        created_by: str,
        schedule_id: str | None = None,
    ) -> BackupRecord:
        # A restore point is incremental too: it must hold everything, not re-read everything.
        parent = await self.latest_completed() if kind in ("incremental", "restore-point") else None
        record = BackupRecord(
            id=_new_backup_id(),
            kind=kind,
            include=include,
            parent_id=parent.id if parent else None,
            created_by=created_by,
            schedule_id=schedule_id,
            run_by_namespace=self.settings.namespace,
            format_version=BACKUP_FORMAT_VERSION,
            app_version=__version__,
        )
        held = await self.leases.acquire(job_lease(record.id))
        try:
            await self.store.save(record)
        except BaseException:
            await self.leases.release(held)
            raise
        self.jobs[record.id] = asyncio.create_task(
            self._held(held, lambda: self._run(record)), name=f"backup-{record.id}"
        )
        _log.info("backup.started", backup_id=record.id, kind=kind, created_by=created_by)
        return record

    async def _held(self, held: Held, work: Callable[[], Awaitable[None]]) -> None:
        # A lost lease is logged by the kit; the job, cancelled, recorded its own failure.
        with suppress(LeaseLost):
            await self.leases.hold(held, work)

    async def wait(self, backup_id: str) -> BackupRecord:
        task = self.jobs.get(backup_id)
        if task is not None:
            await asyncio.shield(task)
        record = await self.store.get(backup_id)
        assert record is not None
        return record

    def drain(self) -> None:
        """The server begins to shut down: readers waiting for a set are answered now."""
        self._draining.set()

    async def until_finished(
        self,
        backup_id: str,
        wait_s: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Return once the set is no longer running (or is not there), after `wait_s` at the
        latest, or when the server begins to shut down. A job of this process is awaited; one
        of another replica is looked at every `FINISHED_RECHECK_S` (a job whose lease is gone
        is over: its replica died) until the reader is `gone`."""
        deadline = time.monotonic() + wait_s
        job = self.jobs.get(backup_id)
        if job is not None:
            draining = asyncio.ensure_future(self._draining.wait())
            either: set[asyncio.Future[Any]] = {job, draining}  # neither is cancelled by wait
            try:
                await asyncio.wait(either, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                draining.cancel()
            return
        while not self._draining.is_set():
            record = await self.store.get(backup_id)
            if record is None or record.status != "running" or backup_id in self.jobs:
                return
            if not await self._job_live(job_lease(backup_id)):
                return  # its replica died: it is shown failed
            left = deadline - time.monotonic()
            if left <= 0 or (gone is not None and await gone()):
                return
            with suppress(TimeoutError):
                async with asyncio.timeout(min(FINISHED_RECHECK_S, left)):
                    await self._draining.wait()

    async def latest_completed(self) -> BackupRecord | None:
        done = [r for r in await self.store.all() if r.status == "completed"]
        return done[-1] if done else None

    async def _run(self, record: BackupRecord) -> None:
        reporter = ProgressReporter(
            record, self.store, self.js, self.settings.namespace, self.settings.progress_interval_s
        )
        # The parent's manifest is read while the database is dumped (it is first needed
        # when the objects are compared with it).
        parent = asyncio.create_task(self._parent_manifest(record.parent_id))
        try:
            try:
                manifest = await self.creator.run(record, reporter, parent)
                await reporter.settled()
            except BaseException:
                await reporter.abandon()
                raise
            finally:
                await cancel_and_wait([parent])
            if record.include.tokens:
                tokens = await self.tokens.list()
                manifest = manifest.model_copy(
                    update={"tokens": [BackedToken.model_validate(t.model_dump()) for t in tokens]}
                )
            reporter.end_phase("manifest")
            record.manifest_sha256 = await self.store.put_manifest(manifest)
            self._last_manifest = (record.id, record.manifest_sha256, manifest)
            reporter.end_phase("done")
            record.counts = manifest.counts
            record.alembic_revisions = manifest.alembic_revisions
            record.progress.percent = 100.0
            record.status = "completed"
            record.finished_at = now()
            await self.store.save(record)
        except asyncio.CancelledError:
            await self._fail(record, "cancelled: the backup service stopped")
            raise
        except Exception as exc:
            _log.exception("backup.failed", backup_id=record.id)
            await self._fail(record, describe(exc))
        else:
            self.metrics.bytes_copied.inc(record.progress.bytes_copied)
            self._count(record)
            await self._publish(subjects.BACKUP_COMPLETED, record)
            _log.info(
                "backup.completed",
                backup_id=record.id,
                objects=record.progress.objects_done,
                bytes_copied=record.progress.bytes_copied,
                phase_seconds=record.progress.phase_seconds,
            )
        finally:
            self.jobs.pop(record.id, None)

    async def _parent_manifest(self, parent_id: str | None) -> Manifest | None:
        if parent_id is None:
            return None
        found = await self.store.get(parent_id)
        if found is None:
            return None
        kept = self._last_manifest
        if kept is not None and (found.id, found.manifest_sha256) == kept[:2]:
            return kept[2]  # the very manifest this replica wrote under that checksum
        return await self.store.manifest(found)

    async def _fail(self, record: BackupRecord, error: str) -> None:
        record.status = "failed"
        record.error = error
        record.finished_at = now()
        with suppress(Exception):
            await self.store.save(record)
        self._count(record)
        await self._publish(subjects.BACKUP_FAILED, record)

    def _count(self, record: BackupRecord) -> None:
        scheduled = "true" if record.schedule_id else "false"
        self.metrics.backups.labels(record.kind, record.status, scheduled).inc()
        if record.finished_at is not None:
            took = (record.finished_at - record.created_at).total_seconds()
            self.metrics.duration.labels(record.kind, record.status).observe(max(0.0, took))
        self.metrics.finished(record)

    async def _publish(self, subject: str, record: BackupRecord) -> None:
        event = BackupFinished(
            backup_id=record.id,
            status="completed" if record.status == "completed" else "failed",
            error=record.error,
            kind=record.kind,
            schedule_id=record.schedule_id,
        )
        try:
            await self.js.publish(
                subjects.subject(subject, self.settings.namespace),
                event.model_dump_json().encode(),
                headers={"Nats-Msg-Id": event.event_id},
            )
        except Exception as exc:
            _log.error("backup.event_unpublished", backup_id=record.id, error=str(exc))

    async def current_revisions(self) -> list[str]:
        """The database's Alembic revisions, read at most every few seconds (lists and
        progress polls ask for them on every request)."""
        cached = self._revisions
        if cached is not None and time.monotonic() - cached[0] < _REVISIONS_TTL_S:
            return cached[1]
        conn = await db.connect(self.settings, "loupe-backup")
        try:
            found = await database.revisions(conn)
        finally:
            await conn.close()
        self._revisions = (time.monotonic(), found)
        return found

    async def shown_records(self, backup_id: str | None = None) -> list[BackupShown]:
        """Records as answered: with compatibility, and a running set whose job is gone
        (its process died) shown as failed."""
        # Which jobs run is taken before the records are read: a job that ends in between
        # has saved its final state first.
        live = set(self.jobs)
        if backup_id is None:
            records = list(reversed(await self.store.all()))
        else:
            found = await self.store.get(backup_id)
            records = [found] if found is not None else []
        for index, record in enumerate(records):
            if record.status != "running" or record.id in live:
                continue
            # Another replica's job, by its lease; a lease gone may be a job that just ended,
            # so its record is read again after the lease.
            if await self._job_live(job_lease(record.id)):
                live.add(record.id)
            elif (fresh := await self.store.get(record.id)) is not None:
                records[index] = fresh
        current = await self.current_revisions()
        return [self.shown(r, current, live) for r in records]

    def shown(
        self, record: BackupRecord, current: list[str], live: set[str] | None = None
    ) -> BackupShown:
        compat: Compatibility = compatibility.quick(
            record.format_version, record.alembic_revisions, current
        )
        status = record.shown_status(self.settings.stale_after_s)
        if record.status == "running" and record.id not in (live or set(self.jobs)):
            status = "failed"
        return BackupShown.model_validate(
            {
                **record.model_dump(),
                "status": status,
                "compatibility": compat if status == "completed" else None,
            }
        )

    # --- verification ------------------------------------------------------------------------

    async def verify(self, record: BackupRecord) -> BackupRecord:
        manifest = await self.store.manifest(record)
        record.verification = await verify(
            self.s3, self.settings.backup_bucket, manifest, self.copier
        )
        await self.store.save(record)
        self.metrics.verifications.labels("ok" if record.verification.ok else "failed").inc()
        _log.info("backup.verified", backup_id=record.id, ok=record.verification.ok)
        return record

    # --- archives ----------------------------------------------------------------------------

    async def archive(self, record: BackupRecord) -> tuple[Iterator[bytes], int]:
        """The set's tar stream, and its size in bytes."""
        manifest = await self.store.manifest(record)
        data = manifest.model_dump_json().encode()
        parts = archive.members(manifest)
        size = archive.archive_size(data, parts)
        return archive.stream(self.s3, self.settings.backup_bucket, data, parts), size

    async def import_archive(self, path: Path, imported_by: str) -> BackupRecord:
        """Check the whole archive, then store it as a new completed set."""
        conn = await db.connect(self.settings, "loupe-backup-import")
        try:
            live = {t.name for t in await database.describe(conn)}
        finally:
            await conn.close()
        manifest = await asyncio.to_thread(
            archive.check,
            path,
            live,
            manifest_max_bytes=self.settings.import_manifest_max_bytes,
            member_max_bytes=self.settings.import_member_max_bytes,
        )
        record = BackupRecord(
            id=_new_backup_id(),
            kind="imported",
            include=manifest.include,
            created_by=imported_by,
            run_by_namespace=self.settings.namespace,
            format_version=manifest.format_version,
            app_version=manifest.app_version,
            alembic_revisions=manifest.alembic_revisions,
        )
        source_id = manifest.backup_id
        try:
            await asyncio.to_thread(
                archive.store, self.s3, self.settings.backup_bucket, path, manifest, record.id
            )
            manifest = manifest.model_copy(
                update={"backup_id": record.id, "kind": "imported", "parent_id": None}
            )
            record.manifest_sha256 = await self.store.put_manifest(manifest)
            record.counts = manifest.counts
            record.status = "completed"
            record.finished_at = now()
            record.progress.percent = 100.0
            record.progress.phase = "done"
            await self.store.save(record)
        except BaseException:
            # Nothing of a set that was not stored whole stays (its blobs, in no manifest,
            # are collected with the next deletion).
            with suppress(Exception):
                await asyncio.to_thread(self._remove_set, record.id)
            raise
        _log.info("backup.imported", backup_id=record.id, source_backup_id=source_id)
        return record

    # --- deletion ----------------------------------------------------------------------------

    async def delete(self, record: BackupRecord) -> dict[str, int]:
        """Remove a set, then every blob no remaining set references."""
        if record.id in self.jobs or (
            record.status == "running" and await self._job_live(job_lease(record.id))
        ):
            raise Busy("the backup is still running")

        files = await asyncio.to_thread(self._remove_set, record.id)
        blobs = await self.collect()
        _log.info("backup.deleted", backup_id=record.id, files=files, blobs_collected=blobs)
        return {"files_removed": files, "blobs_collected": blobs}

    def _remove_set(self, backup_id: str) -> int:
        keys = [
            o.key
            for o in objects.listing(
                self.s3, self.settings.backup_bucket, layout.set_prefix(backup_id)
            )
        ]
        # The state last: a set without its state is never listed.
        for key in sorted(keys, key=lambda k: k.endswith("state.json")):
            objects.remove(self.s3, self.settings.backup_bucket, key)
        return len(keys)

    async def refcounts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in await self.store.all():
            if record.status != "completed":
                continue
            for sha in (await self.store.manifest(record)).blob_hashes():
                counts[sha] = counts.get(sha, 0) + 1
        return counts

    async def collect(self) -> int:
        """Remove blobs no completed set references; skipped while a backup runs (its blobs
        are in no manifest yet)."""
        async with self._collect_lock:
            if self.jobs or (self.restore_task and not self.restore_task.done()):
                return 0
            # Nor while one runs on another replica (or died and is not yet marked).
            if any(r.status == "running" for r in await self.store.all()):
                return 0
            try:
                counts = await self.refcounts()
            except (CorruptManifest, ValueError) as exc:
                # A set whose manifest cannot be read may use any blob: collect nothing.
                _log.warning("backup.collection_skipped", error=str(exc))
                return 0
            bucket = self.settings.backup_bucket
            present = await asyncio.to_thread(list_backup_blobs, self.s3, bucket)
            garbage = sorted(present - counts.keys())
            async with asyncio.TaskGroup() as group:
                for sha in garbage:
                    group.create_task(
                        self.copier.run(objects.remove, self.s3, bucket, layout.blob_key(sha))
                    )
            return len(garbage)

    # --- restores ----------------------------------------------------------------------------

    async def plan(
        self, record: BackupRecord, mode: str, restore_tokens: bool | None = None
    ) -> RestorePlan:
        manifest = await self.store.manifest(record)
        plan = await self.restorer.plan(manifest, mode)
        tokens = _tokens_restored(manifest, restore_tokens)
        plan["tokens"] = {"in_backup": len(manifest.tokens), "restored": tokens}
        if manifest.tokens and not tokens and manifest.kind == "imported":
            plan["warnings"].append(
                f"the archive carries {len(manifest.tokens)} API tokens issued elsewhere; they "
                "are put back only with restore_tokens: true"
            )
        elif not manifest.tokens:
            plan["warnings"].append(
                "the set holds no API tokens: tokens issued since are kept, lines whose tokens "
                "are lost must be given new ones"
            )
        return RestorePlan.model_validate(plan)

    async def restore(
        self,
        record: BackupRecord,
        mode: str,
        principal: Principal,
        restore_point: bool,
        restore_tokens: bool | None = None,
    ) -> RestoreRecord:
        if self.restore_task is not None and not self.restore_task.done():
            raise Busy("another restore is running")
        try:
            exclusive = await self.leases.acquire(RESTORE_LEASE)
        except LeaseTaken:
            raise Busy("another restore is running") from None
        try:
            restore, held, manifest = await self._start_restore(record, mode, principal)
        except BaseException:
            await self.leases.release(exclusive)
            raise
        self.restore_task = asyncio.create_task(
            self._held(
                exclusive,
                lambda: self._held(
                    held,
                    lambda: self._restore(
                        restore,
                        manifest,
                        restore_point and mode == "replace",
                        principal,
                        _tokens_restored(manifest, restore_tokens),
                    ),
                ),
            ),
            name=f"restore-{restore.id}",
        )
        return restore

    async def _start_restore(
        self, record: BackupRecord, mode: str, principal: Principal
    ) -> tuple[RestoreRecord, Held, Manifest]:
        manifest = await self.store.manifest(record)
        plan = await self.restorer.plan(manifest, mode)
        if not plan["can_restore"]:
            raise RestoreRefused("; ".join(plan["blockers"]))
        restore = RestoreRecord(
            id=uuid.uuid4().hex,
            backup_id=record.id,
            mode="empty" if mode == "empty" else "replace",
            started_by=principal.name,
            compatibility=plan["compatibility"],
            run_by_namespace=self.settings.namespace,
        )
        held = await self.leases.acquire(restore_lease(restore.id))
        try:
            await self.store.save_restore(restore)
        except BaseException:
            await self.leases.release(held)
            raise
        return restore, held, manifest

    async def _restore(
        self,
        restore: RestoreRecord,
        manifest: Manifest,
        take_restore_point: bool,
        principal: Principal,
        restore_tokens: bool,
    ) -> None:
        added: list[str] = []
        renewer: asyncio.Task[None] | None = None

        async def phase(name: str) -> None:
            restore.phase = name
            await self.store.save_restore(restore)
            _log.info("restore.phase", restore_id=restore.id, phase=name)

        try:
            with new_workdir(self.settings) as directory:
                # The fence first: the restore point (and, in `empty` mode, the check that
                # the installation is empty) sees every write that was answered, and no
                # write is answered after it.
                # The data files are fetched and checked meanwhile: that only reads the set.
                await phase("maintenance")
                checking = asyncio.create_task(self.restorer.fetch_data(manifest, Path(directory)))
                try:
                    renewer = await self._begin_maintenance(restore)
                    await phase("checking")
                    paths = await checking
                finally:
                    await cancel_and_wait([checking])
                if take_restore_point:
                    await phase("restore-point")
                    point = await self.create("restore-point", Include(), restore.started_by)
                    restore.restore_point_id = point.id
                    done = await self.wait(point.id)
                    if done.status != "completed":
                        raise RestoreRefused(f"the restore point failed: {done.error}")
                await phase("objects")
                await self.restorer.copy_objects(manifest.objects, added)
                restore.objects_copied = len(added)
                await self.restorer.load(manifest, paths, restore, phase)
            if restore_tokens:
                await phase("tokens")
                restored = [
                    await self.tokens.restore(TokenRecord.model_validate(t.model_dump()))
                    for t in manifest.tokens
                ]
                restore.details["tokens_restored"] = sum(restored)
            restore.status = "completed"
            restore.phase = "done"
            self.metrics.restores.labels("completed").inc()
            _log.info("restore.completed", restore_id=restore.id, backup_id=restore.backup_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            restore.status = "failed"
            restore.error = describe(exc)
            restore.rolled_back = True
            self.metrics.restores.labels("failed").inc()
            _log.exception("restore.failed", restore_id=restore.id)
            with suppress(Exception):
                await self.restorer.remove_objects(added)
        finally:
            if renewer is not None:
                await cancel_and_wait([renewer])
                with suppress(Exception):
                    await maintenance.withdraw(self.js, self.maintenance_bucket)
            restore.finished_at = now()
            with suppress(Exception):
                await self.store.save_restore(restore)
            # Published after the commit: the audit record of the start may have been in the
            # tables the restore replaced; this one lands in the restored audit log.
            with suppress(Exception):
                await publish_audit(
                    self.js,
                    principal,
                    action="backup.restore.finished",
                    target=f"backup:{restore.backup_id}",
                    request_id=None,
                    namespace=self.settings.namespace,
                    details={
                        "restore_id": restore.id,
                        "status": restore.status,
                        "restore_point_id": restore.restore_point_id,
                        "error": restore.error,
                    },
                )

    async def _begin_maintenance(self, restore: RestoreRecord) -> asyncio.Task[None]:
        lease = self.settings.maintenance_lease_s

        def notice() -> MaintenanceNotice:
            return MaintenanceNotice(
                restore_id=restore.id,
                backup_id=restore.backup_id,
                started_at=restore.started_at,
                lease_until=now() + timedelta(seconds=lease),
            )

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease / 3)
                try:
                    await maintenance.announce(self.js, self.maintenance_bucket, notice())
                except Exception as exc:
                    _log.warning("restore.maintenance_unrenewed", error=str(exc))

        await maintenance.announce(self.js, self.maintenance_bucket, notice())
        renewer = asyncio.create_task(renew(), name="maintenance-renewal")
        try:
            acked = await maintenance.await_fence(
                self.nc, self.js, self.maintenance_bucket, restore.id, self.settings.fence_timeout_s
            )
        except BaseException:
            await cancel_and_wait([renewer])
            with suppress(Exception):
                await maintenance.withdraw(self.js, self.maintenance_bucket)
            raise
        restore.details["fenced_instances"] = acked
        _log.info("restore.fenced", restore_id=restore.id, instances=acked)
        return renewer


def _tokens_restored(manifest: Manifest, asked: bool | None) -> bool:
    """Tokens come back by default from this installation's own sets, from an imported
    archive only when asked for."""
    return asked if asked is not None else manifest.kind != "imported"
