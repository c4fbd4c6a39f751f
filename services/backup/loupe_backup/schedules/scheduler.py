"""Scheduled backups: schedules live in the backup bucket (`schedules/<id>.json`); a loop
starts each one when its cron expression comes due, then applies its retention policy. A
failed scheduled backup is a failed set in the list, a `backup.failed` event and a count in
`backup_sets_total{scheduled="true",status="failed"}` — and the schedule keeps its last error."""

import asyncio
import uuid
from contextlib import suppress

from loupe_backup.backups import objects
from loupe_backup.backups.records import now
from loupe_backup.backups.service import BackupService
from loupe_backup.schedules.cron import Cron
from loupe_backup.schedules.model import Schedule, ScheduleIn
from loupe_backup.schedules.retention import kept
from loupe_shared.kit.logging import get_logger

_log = get_logger("backup.scheduler")
PREFIX = "schedules/"


class Scheduler:
    def __init__(self, backups: BackupService, tick_s: float) -> None:
        self.backups = backups
        self.tick_s = tick_s
        self.s3 = backups.s3
        self.bucket = backups.settings.backup_bucket
        self.running: dict[str, asyncio.Task[Schedule]] = {}

    # --- records -----------------------------------------------------------------------------

    async def save(self, schedule: Schedule) -> None:
        data = schedule.model_dump_json(indent=1).encode()
        key = f"{PREFIX}{schedule.id}.json"
        await asyncio.to_thread(objects.put, self.s3, self.bucket, key, data, "application/json")

    async def get(self, schedule_id: str) -> Schedule | None:
        key = f"{PREFIX}{schedule_id}.json"
        data = await asyncio.to_thread(objects.get_bytes, self.s3, self.bucket, key)
        return None if data is None else Schedule.model_validate_json(data)

    async def all(self) -> list[Schedule]:
        def keys() -> list[str]:
            return [o.key for o in objects.listing(self.s3, self.bucket, PREFIX)]

        found = await asyncio.gather(
            *(
                self.get(k.removeprefix(PREFIX).removesuffix(".json"))
                for k in await asyncio.to_thread(keys)
            )
        )
        return sorted((s for s in found if s is not None), key=lambda s: s.created_at)

    async def create(self, body: ScheduleIn, created_by: str) -> Schedule:
        schedule = Schedule(
            id=uuid.uuid4().hex[:12],
            name=body.name,
            cron=body.cron,
            kind=body.kind,
            include=body.include.to_include(),
            retention=body.retention,
            enabled=body.enabled,
            created_by=created_by,
        )
        schedule.next_run_at = Cron.parse(schedule.cron).next_after(now())
        await self.save(schedule)
        return schedule

    async def update(self, schedule: Schedule, body: ScheduleIn) -> Schedule:
        schedule = schedule.model_copy(
            update={
                "name": body.name,
                "cron": body.cron,
                "kind": body.kind,
                "include": body.include.to_include(),
                "retention": body.retention,
                "enabled": body.enabled,
                "next_run_at": Cron.parse(body.cron).next_after(now()),
            }
        )
        await self.save(schedule)
        return schedule

    async def delete(self, schedule_id: str) -> None:
        key = f"{PREFIX}{schedule_id}.json"
        await asyncio.to_thread(objects.remove, self.s3, self.bucket, key)

    # --- running -----------------------------------------------------------------------------

    async def loop(self) -> None:
        while True:
            try:
                for schedule in await self.all():
                    due = schedule.next_run_at is not None and schedule.next_run_at <= now()
                    if schedule.enabled and due and schedule.id not in self.running:
                        self.start(schedule)
            except Exception as exc:  # the object store is down: try at the next tick
                _log.warning("schedule.tick_failed", error=str(exc))
            await asyncio.sleep(self.tick_s)

    def start(self, schedule: Schedule) -> asyncio.Task[Schedule]:
        task = asyncio.create_task(self.run(schedule), name=f"schedule-{schedule.id}")
        self.running[schedule.id] = task
        task.add_done_callback(lambda _: self.running.pop(schedule.id, None))
        return task

    async def run(self, schedule: Schedule) -> Schedule:
        """One scheduled backup, then retention; the schedule records the outcome."""
        schedule.last_run_at = now()
        schedule.next_run_at = Cron.parse(schedule.cron).next_after(now())
        try:
            record = await self.backups.create(
                schedule.kind, schedule.include, f"schedule:{schedule.name}", schedule.id
            )
            schedule.last_backup_id = record.id
            await self.save(schedule)
            record = await self.backups.wait(record.id)
            schedule.last_status = record.status
            schedule.last_error = record.error
        except Exception as exc:
            schedule.last_status = "failed"
            schedule.last_error = f"{type(exc).__name__}: {exc}"
        if schedule.last_status == "completed":
            schedule.failures = 0
            with suppress(Exception):
                await self.apply_retention(schedule)
        else:
            schedule.failures += 1
            _log.error(
                "schedule.backup_failed",
                schedule_id=schedule.id,
                backup_id=schedule.last_backup_id,
                error=schedule.last_error,
            )
        await self.save(schedule)
        return schedule

    async def apply_retention(self, schedule: Schedule) -> list[str]:
        records = [
            r
            for r in await self.backups.store.all()
            if r.schedule_id == schedule.id and r.status == "completed"
        ]
        keep = kept([(r.id, r.created_at) for r in records], schedule.retention)
        dropped = [r for r in records if r.id not in keep]
        for record in dropped:
            await self.backups.delete(record)
        if dropped:
            _log.info(
                "schedule.retention_applied",
                schedule_id=schedule.id,
                deleted=[r.id for r in dropped],
            )
        return [r.id for r in dropped]
