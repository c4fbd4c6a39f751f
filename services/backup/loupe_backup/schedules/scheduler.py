"""Scheduled backups: schedules live in the backup bucket (`schedules/<id>.json`); a loop
starts each one when its cron expression comes due, then applies its retention policy. A
failed scheduled backup is a failed set in the list, a `backup.failed` event and a count in
`backup_sets_total{scheduled="true",status="failed"}` — and the schedule keeps its last error.

With several replicas every replica's loop looks for due schedules, and a schedule runs under
its lease `backup.schedules.<id>` (kit.lease): the replica that takes it reads the schedule
again and runs it only if it is still due, so each comes due once and runs on one replica. A
run asked for (`POST .../run`) while another replica runs the schedule is refused (409). A
replica killed during a scheduled backup leaves its set running under a lease nobody renews:
another replica marks it failed (see backups/service.py) and the schedule runs again when it
next comes due.
"""

import asyncio
import uuid
from contextlib import suppress

from loupe_backup.backups import objects
from loupe_backup.backups.records import now
from loupe_backup.backups.service import BackupService
from loupe_backup.schedules.cron import Cron
from loupe_backup.schedules.model import Schedule, ScheduleIn
from loupe_backup.schedules.retention import kept
from loupe_shared.kit.lease import LeaseLost, LeaseTaken
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("backup.scheduler")
PREFIX = "schedules/"


def schedule_lease(schedule_id: str) -> str:
    return f"backup.schedules.{schedule_id}"


def due(schedule: Schedule) -> bool:
    return schedule.enabled and schedule.next_run_at is not None and schedule.next_run_at <= now()


class Scheduler:
    def __init__(self, backups: BackupService, tick_s: float) -> None:
        self.backups = backups
        self.tick_s = tick_s
        self.s3 = backups.s3
        self.bucket = backups.settings.backup_bucket
        self.running: dict[str, asyncio.Task[Schedule | None]] = {}

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
                    if due(schedule) and schedule.id not in self.running:
                        self.start(schedule.id, if_due=True)
            except Exception as exc:  # the object store is down: try at the next tick
                _log.warning("schedule.tick_failed", error=str(exc))
            await asyncio.sleep(self.tick_s)

    def start(self, schedule_id: str, *, if_due: bool = False) -> asyncio.Task[Schedule | None]:
        """Run the schedule (`if_due`: only if it is still due once its lease is held); the
        task answers None when it did not run. Asked for (not `if_due`), a schedule another
        replica runs is a 409."""
        task = asyncio.create_task(
            self._exclusive(schedule_id, if_due), name=f"schedule-{schedule_id}"
        )
        self.running[schedule_id] = task
        task.add_done_callback(lambda _: self.running.pop(schedule_id, None))
        return task

    async def _exclusive(self, schedule_id: str, if_due: bool) -> Schedule | None:
        try:
            return await self.backups.leases.run(
                schedule_lease(schedule_id), lambda: self._run_current(schedule_id, if_due)
            )
        except LeaseTaken:
            if if_due:
                return None
            raise Problem(
                409, f"Schedule {schedule_id} is running already on another replica."
            ) from None
        except LeaseLost:
            return None  # logged by the kit; the backup itself has a lease of its own

    async def _run_current(self, schedule_id: str, if_due: bool) -> Schedule | None:
        # Read again under the lease: another replica may just have run it.
        schedule = await self.get(schedule_id)
        if schedule is None or (if_due and not due(schedule)):
            return None
        return await self.run(schedule)

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
