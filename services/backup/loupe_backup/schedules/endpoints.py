"""Schedules and retention. Reading them is for operators; changing them is for admins,
since a retention policy deletes backup sets."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from loupe_backup.backups.security import allow
from loupe_backup.schedules.model import Schedule, ScheduleIn
from loupe_backup.schedules.scheduler import Scheduler
from loupe_shared.kit.audit import publish_audit
from loupe_shared.kit.auth import Permission, Principal
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/backup-schedules", tags=["backup schedules"])
ScheduleId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]
Reader = Annotated[Principal, Depends(allow(Permission.BACKUPS_READ))]
Admin = Annotated[Principal, Depends(allow(Permission.BACKUPS_RESTORE, admin_only=True))]


def scheduler(request: Request) -> Scheduler:
    found: Scheduler = request.app.state.scheduler
    return found


Schedules = Annotated[Scheduler, Depends(scheduler)]


async def _found(schedules: Scheduler, schedule_id: str) -> Schedule:
    schedule = await schedules.get(schedule_id)
    if schedule is None:
        raise Problem(404, f"There is no backup schedule {schedule_id}.")
    return schedule


async def _audit(
    schedules: Scheduler, request: Request, principal: Principal, action: str, target: str
) -> None:
    await publish_audit(
        schedules.backups.js,
        principal,
        action=action,
        target=target,
        request_id=request.scope["state"].get("request_id"),
        namespace=schedules.backups.settings.namespace,
    )


@router.get("", summary="Backup schedules with their last outcome")
async def list_schedules(schedules: Schedules, _: Reader) -> dict[str, Any]:
    return {"items": [s.model_dump(mode="json") for s in await schedules.all()]}


@router.post("", status_code=201, summary="A cron schedule with a retention policy")
async def create_schedule(
    body: ScheduleIn, request: Request, schedules: Schedules, principal: Admin
) -> dict[str, Any]:
    schedule = await schedules.create(body, principal.name)
    await _audit(schedules, request, principal, "backup.schedule.create", f"schedule:{schedule.id}")
    return schedule.model_dump(mode="json")


@router.get("/{schedule_id}", summary="One schedule")
async def get_schedule(schedule_id: ScheduleId, schedules: Schedules, _: Reader) -> dict[str, Any]:
    return (await _found(schedules, schedule_id)).model_dump(mode="json")


@router.put("/{schedule_id}", summary="Change a schedule")
async def update_schedule(
    schedule_id: ScheduleId,
    body: ScheduleIn,
    request: Request,
    schedules: Schedules,
    principal: Admin,
) -> dict[str, Any]:
    schedule = await schedules.update(await _found(schedules, schedule_id), body)
    await _audit(schedules, request, principal, "backup.schedule.update", f"schedule:{schedule.id}")
    return schedule.model_dump(mode="json")


@router.delete("/{schedule_id}", status_code=204, summary="Remove a schedule (not its sets)")
async def delete_schedule(
    schedule_id: ScheduleId, request: Request, schedules: Schedules, principal: Admin
) -> None:
    await _found(schedules, schedule_id)
    await schedules.delete(schedule_id)
    await _audit(schedules, request, principal, "backup.schedule.delete", f"schedule:{schedule_id}")


@router.post("/{schedule_id}/run", summary="Run a schedule now and wait for it (with retention)")
async def run_schedule(schedule_id: ScheduleId, schedules: Schedules, _: Admin) -> dict[str, Any]:
    schedule = await _found(schedules, schedule_id)
    if schedule_id in schedules.running:
        raise Problem(409, f"Schedule {schedule_id} is running already.")
    done = await schedules.start(schedule)
    return done.model_dump(mode="json")
