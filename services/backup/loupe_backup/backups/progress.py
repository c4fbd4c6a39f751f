"""A job's progress: saved with its record and published as `backup.progress`, at most once
per interval. A phase that starts is saved with the next report due (`force` saves at once:
the first phase, so a job shows it has begun); the phases' durations are in every save and in
the final record. A save per phase used to be most of an incremental backup of an unchanged
installation (each one a PUT and a published event, before the work went on). The first
phase is saved while the work begins (`begin`): every later save, and the final one, waits for
it (`settled`), so a record is never overwritten by an older state of itself."""

import asyncio
import time

from nats.js.client import JetStreamContext

from loupe_backup.backups.records import BackupRecord
from loupe_backup.backups.store import RecordStore
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import BackupProgress
from loupe_shared.kit.logging import get_logger

_log = get_logger("backup.progress")


class ProgressReporter:
    def __init__(
        self,
        record: BackupRecord,
        store: RecordStore,
        js: JetStreamContext,
        namespace: str,
        interval_s: float,
    ) -> None:
        self.record = record
        self.store = store
        self.js = js
        self.namespace = namespace
        self.interval_s = interval_s
        self._last = 0.0
        self._phase_started = time.monotonic()
        self._saving: asyncio.Task[None] | None = None

    def add(self, *, objects: int = 0, bytes_: int = 0, copied: bool = False) -> None:
        p = self.record.progress
        p.objects_done += objects
        p.bytes_done += bytes_
        if copied:
            p.objects_copied += objects
            p.bytes_copied += bytes_
        total = max(p.bytes_total, 1)
        p.percent = round(min(99.9, 100.0 * p.bytes_done / total), 1)

    def end_phase(self, next_phase: str) -> None:
        p = self.record.progress
        now = time.monotonic()
        if p.phase not in ("starting", next_phase):
            p.phase_seconds[p.phase] = round(now - self._phase_started, 3)
        self._phase_started = now
        p.phase = next_phase

    def begin(self, phase: str) -> None:
        """Start `phase` and save the record with it in the background (the job shows it has
        begun while its first work runs, instead of after a PUT and a publish)."""
        self.end_phase(phase)
        self._last = time.monotonic()
        self._saving = asyncio.create_task(self._save(), name=f"progress-{self.record.id}")

    async def settled(self) -> None:
        """Wait for the save `begin` started; its failure is raised here. Every other save of
        the record comes after this."""
        saving, self._saving = self._saving, None
        if saving is not None:
            await saving

    async def abandon(self) -> None:
        """Wait for a save begun in the background, whatever becomes of it: the job failed or
        stopped and its final record is saved next. (Not cancelled: its PUT would go on in its
        thread and could land after the final record.)"""
        saving, self._saving = self._saving, None
        if saving is not None:
            await asyncio.gather(asyncio.shield(saving), return_exceptions=True)

    async def report(self, phase: str | None = None, *, force: bool = False) -> None:
        await self.settled()
        if phase is not None:
            self.end_phase(phase)
        if not force and time.monotonic() - self._last < self.interval_s:
            return
        self._last = time.monotonic()
        await self._save()

    async def _save(self) -> None:
        p = self.record.progress
        await self.store.save(self.record)
        event = BackupProgress(
            backup_id=self.record.id,
            percent=p.percent,
            bytes_done=p.bytes_done,
            objects_done=p.objects_done,
            phase=p.phase,
        )
        try:
            await self.js.publish(
                subjects.subject(subjects.BACKUP_PROGRESS, self.namespace),
                event.model_dump_json().encode(),
                headers={"Nats-Msg-Id": event.event_id},
            )
        except Exception as exc:  # progress events are informative; the record is the truth
            _log.warning("backup.progress_unpublished", backup_id=self.record.id, error=str(exc))
