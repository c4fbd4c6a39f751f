"""The `/api/backups` routes: parse, ask the service, audit, answer. Refusals the service
raises become problems in one place (`refused_as_409`)."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from loupe_backup.backups import archive
from loupe_backup.backups.manifest import InvalidManifest, UnsupportedFormat
from loupe_backup.backups.records import BackupRecord, RestoreRecord, Verification
from loupe_backup.backups.restorer import RestoreRefused, new_workdir
from loupe_backup.backups.schemas import (
    BackupCreate,
    BackupDeleted,
    BackupList,
    BackupShown,
    RestorePlan,
    RestoreRequest,
)
from loupe_backup.backups.security import acting
from loupe_backup.backups.service import MAX_WAIT_S, BackupService, Busy
from loupe_backup.backups.store import CorruptManifest
from loupe_backup.state import Backups
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission
from loupe_shared.kit.openapi import binary
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/backups", tags=["backups"])
BackupId = Annotated[str, Path(pattern=r"^[0-9A-Za-z\-]{1,64}$")]
Reader = Annotated[Actor, Depends(acting(Permission.BACKUPS_READ))]
Downloader = Annotated[Actor, Depends(acting(Permission.BACKUPS_READ, heavy=True))]
Writer = Annotated[Actor, Depends(acting(Permission.BACKUPS_WRITE))]
Restorer = Annotated[Actor, Depends(acting(Permission.BACKUPS_RESTORE))]
Admin = Annotated[Actor, Depends(acting(Permission.BACKUPS_RESTORE, admin_only=True))]


@contextmanager
def refused_as_409() -> Iterator[None]:
    """What the service refuses to do with a set (unreadable manifest, unsupported format,
    a restore it must not run, work under way) is a 409 naming why."""
    try:
        yield
    except (CorruptManifest, UnsupportedFormat, InvalidManifest, RestoreRefused, Busy) as exc:
        raise Problem(409, str(exc)) from None


async def backup_or_404(svc: BackupService, backup_id: str) -> BackupRecord:
    record = await svc.record(backup_id)
    if record is None:
        raise Problem(404, f"There is no backup {backup_id}.")
    return record


async def completed_or_409(svc: BackupService, backup_id: str) -> BackupRecord:
    """The set, if it is completed (404 if there is none, 409 if it is not completed)."""
    record = await backup_or_404(svc, backup_id)
    if not svc.is_completed(record):
        raise Problem(409, f"Backup {backup_id} is {record.status}, not completed.")
    return record


@router.post("", status_code=202, summary="Start a backup (full or incremental)")
async def create_backup(body: BackupCreate, svc: Backups, actor: Writer) -> BackupShown:
    record = await svc.create(body.kind, body.include.to_include(), actor.principal.name)
    await svc.audit(actor, "backup.create", f"backup:{record.id}", kind=body.kind)
    return svc.shown(record, await svc.current_revisions())


@router.get("", summary="Backup sets, newest first, with compatibility")
async def list_backups(svc: Backups, _: Reader) -> BackupList:
    return BackupList(
        current_revisions=await svc.current_revisions(), items=await svc.shown_records()
    )


@router.get("/{backup_id}", summary="One backup set with its progress")
async def get_backup(
    request: Request,
    backup_id: BackupId,
    svc: Backups,
    _: Reader,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            allow_inf_nan=False,
            description=(
                "seconds (up to 30) to wait for a running set to finish: the answer comes as "
                "soon as it has (completed or failed), or with its progress when the time runs "
                "out. A client following a set asks again until its status is not `running`."
            ),
        ),
    ] = 0,
) -> BackupShown:
    if wait > 0:
        await svc.until_finished(backup_id, wait, request.is_disconnected)
    shown = await svc.shown_records(backup_id)
    if not shown:
        raise Problem(404, f"There is no backup {backup_id}.")
    return shown[0]


@router.post("/{backup_id}/verify", summary="Re-hash every file and blob against the manifest")
async def verify_backup(backup_id: BackupId, svc: Backups, actor: Writer) -> Verification:
    record = await completed_or_409(svc, backup_id)
    with refused_as_409():
        record = await svc.verify(record)
    await svc.audit(actor, "backup.verify", f"backup:{record.id}")
    assert record.verification is not None
    return record.verification


@router.post(
    "/{backup_id}/restore",
    summary="Dry run (default) or restore; restoring needs the admin role",
    response_model=RestorePlan,
    responses={202: {"model": RestoreRecord, "description": "The restore started"}},
)
async def restore_backup(
    backup_id: BackupId, body: RestoreRequest, svc: Backups, actor: Restorer
) -> RestorePlan | JSONResponse:
    record = await completed_or_409(svc, backup_id)
    with refused_as_409():
        if body.dry_run:
            return await svc.plan(record, body.mode, body.restore_tokens)
        if actor.principal.role != "admin":
            raise Problem(
                403, f"Role '{actor.principal.role}' may not restore (needs the admin role)."
            )
        restore = await svc.restore(
            record, body.mode, actor.principal, body.restore_point, body.restore_tokens
        )
    await svc.audit(
        actor, "backup.restore", f"backup:{record.id}", restore_id=restore.id, mode=body.mode
    )
    return JSONResponse(restore.model_dump(mode="json"), status_code=202)


@router.get("/{backup_id}/restores/{restore_id}", summary="A restore's state")
async def get_restore(
    backup_id: BackupId, restore_id: BackupId, svc: Backups, _: Reader
) -> RestoreRecord:
    restore = await svc.restore_record(restore_id)
    if restore is None or restore.backup_id != backup_id:
        raise Problem(404, f"There is no restore {restore_id} of backup {backup_id}.")
    return restore


@router.delete("/{backup_id}", summary="Delete a set; blobs no other set uses are collected")
async def delete_backup(backup_id: BackupId, svc: Backups, actor: Admin) -> BackupDeleted:
    record = await backup_or_404(svc, backup_id)
    with refused_as_409():
        outcome = await svc.delete(record)
    await svc.audit(actor, "backup.delete", f"backup:{record.id}", **outcome)
    return BackupDeleted(id=record.id, deleted=True, **outcome)


@router.get(
    "/{backup_id}/archive",
    summary="The set as one streaming tar archive (manifest, data files, blobs)",
    response_class=StreamingResponse,
    responses=binary(200, "The archive", "application/x-tar"),
)
async def download_archive(
    backup_id: BackupId, svc: Backups, actor: Downloader
) -> StreamingResponse:
    record = await completed_or_409(svc, backup_id)
    with refused_as_409():
        chunks, size = await svc.archive(record)
    await svc.audit(actor, "backup.download", f"backup:{record.id}", bytes=size)
    return StreamingResponse(
        chunks,
        media_type="application/x-tar",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="loupe-backup-{record.id}.tar"',
        },
    )


@router.post("/import", status_code=201, summary="Import an archive made by a download")
async def import_archive(request: Request, svc: Backups, actor: Writer) -> BackupShown:
    with new_workdir(svc.settings) as directory:
        path = FilePath(directory) / "upload.tar"
        await spool(request, path)
        try:
            record = await svc.import_archive(path, actor.principal.name)
        except archive.ArchiveRefused as exc:
            raise Problem(
                422, f"The archive was refused; nothing was written: {exc}", title="Archive refused"
            ) from None
    await svc.audit(actor, "backup.import", f"backup:{record.id}")
    return svc.shown(record, await svc.current_revisions())


async def spool(request: Request, path: FilePath) -> None:
    """The request body to `path`, written in batches from a worker thread."""
    batch: list[bytes] = []
    pending = 0
    with path.open("wb") as out:
        async for chunk in request.stream():
            batch.append(chunk)
            pending += len(chunk)
            if pending >= 8 * 1024 * 1024:
                await asyncio.to_thread(out.writelines, batch)
                batch, pending = [], 0
        await asyncio.to_thread(out.writelines, batch)
