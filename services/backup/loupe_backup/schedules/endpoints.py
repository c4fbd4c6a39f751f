"""Schedules and retention. Reading them is for operators; changing them is for admins,
since a retention policy deletes backup sets."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from loupe_backup.backups.security import acting
from loupe_backup.schedules.model import Schedule, ScheduleIn
from loupe_backup.schedules.scheduler import Scheduler
from loupe_backup.state import Schedules
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/backup-schedules", tags=["backup schedules"])
ScheduleId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]
Reader = Annotated[Actor, Depends(acting(Permission.BACKUPS_READ))]
Admin = Annotated[Actor, Depends(acting(Permission.BACKUPS_RESTORE, admin_only=True))]


class ScheduleList(BaseModel):
    items: list[Schedule]


async def schedule_or_404(schedules: Scheduler, schedule_id: str) -> Schedule:
    schedule = await schedules.get(schedule_id)
    if schedule is None:
        raise Problem(404, f"There is no backup schedule {schedule_id}.")
    return schedule


@router.get("", summary="Backup schedules with their last outcome")
async def list_schedules(schedules: Schedules, _: Reader) -> ScheduleList:
    return ScheduleList(items=await schedules.all())


@router.post("", status_code=201, summary="A cron schedule with a retention policy")
async def create_schedule(body: ScheduleIn, schedules: Schedules, actor: Admin) -> Schedule:
    schedule = await schedules.create(body, actor.principal.name)
    await schedules.backups.audit(actor, "backup.schedule.create", f"schedule:{schedule.id}")
    return schedule


@router.get("/{schedule_id}", summary="One schedule")
async def get_schedule(schedule_id: ScheduleId, schedules: Schedules, _: Reader) -> Schedule:
    return await schedule_or_404(schedules, schedule_id)


@router.put("/{schedule_id}", summary="Change a schedule")
async def update_schedule(
    schedule_id: ScheduleId, body: ScheduleIn, schedules: Schedules, actor: Admin
) -> Schedule:
    schedule = await schedules.update(await schedule_or_404(schedules, schedule_id), body)
    await schedules.backups.audit(actor, "backup.schedule.update", f"schedule:{schedule.id}")
    return schedule


@router.delete("/{schedule_id}", status_code=204, summary="Remove a schedule (not its sets)")
async def delete_schedule(schedule_id: ScheduleId, schedules: Schedules, actor: Admin) -> None:
    await schedule_or_404(schedules, schedule_id)
    await schedules.delete(schedule_id)
    await schedules.backups.audit(actor, "backup.schedule.delete", f"schedule:{schedule_id}")


@router.post("/{schedule_id}/run", summary="Run a schedule now and wait for it (with retention)")
async def run_schedule(schedule_id: ScheduleId, schedules: Schedules, _: Admin) -> Schedule:
    await schedule_or_404(schedules, schedule_id)
    if schedule_id in schedules.running:
        raise Problem(409, f"Schedule {schedule_id} is running already.")
    ran = await schedules.start(schedule_id)
    if ran is None:
        raise Problem(404, f"There is no backup schedule {schedule_id}.")
    return ran
