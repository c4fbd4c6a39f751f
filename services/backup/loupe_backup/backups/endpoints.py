import asyncio
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse

from loupe_backup.backups import archive
from loupe_backup.backups.manifest import InvalidManifest, UnsupportedFormat
from loupe_backup.backups.records import BackupRecord
from loupe_backup.backups.restorer import RestoreRefused, new_workdir
from loupe_backup.backups.schemas import BackupCreate, RestoreRequest
from loupe_backup.backups.security import allow
from loupe_backup.backups.service import BackupService, Busy
from loupe_backup.backups.store import CorruptManifest
from loupe_shared.kit.audit import publish_audit
from loupe_shared.kit.auth import Permission, Principal
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/backups", tags=["backups"])
BackupId = Annotated[str, Path(pattern=r"^[0-9A-Za-z\-]{1,64}$")]
Reader = Annotated[Principal, Depends(allow(Permission.BACKUPS_READ))]
Downloader = Annotated[Principal, Depends(allow(Permission.BACKUPS_READ, heavy=True))]
Writer = Annotated[Principal, Depends(allow(Permission.BACKUPS_WRITE))]
Restorer = Annotated[Principal, Depends(allow(Permission.BACKUPS_RESTORE))]
Admin = Annotated[Principal, Depends(allow(Permission.BACKUPS_RESTORE, admin_only=True))]


def service(request: Request) -> BackupService:
    svc: BackupService = request.app.state.backups
    return svc


Service = Annotated[BackupService, Depends(service)]


async def found(svc: BackupService, backup_id: str) -> BackupRecord:
    record = await svc.store.get(backup_id)
    if record is None:
        raise Problem(404, f"There is no backup {backup_id}.")
    return record


async def completed(svc: BackupService, backup_id: str) -> BackupRecord:
    record = await found(svc, backup_id)
    if record.shown_status(svc.settings.stale_after_s) != "completed" or (
        record.status == "running"
    ):
        raise Problem(409, f"Backup {backup_id} is {record.status}, not completed.")
    return record


async def audit(
    svc: BackupService,
    request: Request,
    principal: Principal,
    action: str,
    target: str,
    **details: Any,
) -> None:
    await publish_audit(
        svc.js,
        principal,
        action=action,
        target=target,
        request_id=request.scope["state"].get("request_id"),
        namespace=svc.settings.namespace,
        details=details,
    )


@router.post("", status_code=202, summary="Start a backup (full or incremental)")
async def create_backup(
    body: BackupCreate, request: Request, svc: Service, principal: Writer
) -> dict[str, Any]:
    record = await svc.create(body.kind, body.include.to_include(), principal.name)
    await audit(svc, request, principal, "backup.create", f"backup:{record.id}", kind=body.kind)
    return svc.shown(record, await svc.current_revisions())


@router.get("", summary="Backup sets, newest first, with compatibility")
async def list_backups(svc: Service, _: Reader) -> dict[str, Any]:
    return {
        "current_revisions": await svc.current_revisions(),
        "items": await svc.shown_records(),
    }


@router.get("/{backup_id}", summary="One backup set with its progress")
async def get_backup(backup_id: BackupId, svc: Service, _: Reader) -> dict[str, Any]:
    shown = await svc.shown_records(backup_id)
    if not shown:
        raise Problem(404, f"There is no backup {backup_id}.")
    return shown[0]


@router.post("/{backup_id}/verify", summary="Re-hash every file and blob against the manifest")
async def verify_backup(
    backup_id: BackupId, request: Request, svc: Service, principal: Writer
) -> dict[str, Any]:
    record = await completed(svc, backup_id)
    try:
        record = await svc.verify(record)
    except CorruptManifest as exc:
        raise Problem(409, str(exc)) from None
    await audit(svc, request, principal, "backup.verify", f"backup:{record.id}")
    assert record.verification is not None
    return record.verification.model_dump(mode="json")


@router.post(
    "/{backup_id}/restore",
    summary="Dry run (default) or restore; restoring needs the admin role",
    response_model=None,
)
async def restore_backup(
    backup_id: BackupId, body: RestoreRequest, request: Request, svc: Service, principal: Restorer
) -> dict[str, Any] | JSONResponse:
    record = await completed(svc, backup_id)
    try:
        if body.dry_run:
            return await svc.plan(record, body.mode, body.restore_tokens)
        if principal.role != "admin":
            raise Problem(403, f"Role '{principal.role}' may not restore (needs the admin role).")
        restore = await svc.restore(
            record, body.mode, principal, body.restore_point, body.restore_tokens
        )
    except (CorruptManifest, UnsupportedFormat, InvalidManifest, RestoreRefused, Busy) as exc:
        raise Problem(409, str(exc)) from None
    await audit(
        svc,
        request,
        principal,
        "backup.restore",
        f"backup:{record.id}",
        restore_id=restore.id,
        mode=body.mode,
    )
    return JSONResponse(restore.model_dump(mode="json"), status_code=202)


@router.get("/{backup_id}/restores/{restore_id}", summary="A restore's state")
async def get_restore(
    backup_id: BackupId, restore_id: BackupId, svc: Service, _: Reader
) -> dict[str, Any]:
    restore = await svc.store.get_restore(restore_id)
    if restore is None or restore.backup_id != backup_id:
        raise Problem(404, f"There is no restore {restore_id} of backup {backup_id}.")
    return restore.model_dump(mode="json")


@router.delete("/{backup_id}", summary="Delete a set; blobs no other set uses are collected")
async def delete_backup(
    backup_id: BackupId, request: Request, svc: Service, principal: Admin
) -> dict[str, Any]:
    record = await found(svc, backup_id)
    try:
        outcome = await svc.delete(record)
    except Busy as exc:
        raise Problem(409, str(exc)) from None
    await audit(svc, request, principal, "backup.delete", f"backup:{record.id}", **outcome)
    return {"id": record.id, "deleted": True, **outcome}


@router.get(
    "/{backup_id}/archive",
    summary="The set as one streaming tar archive (manifest, data files, blobs)",
    response_class=StreamingResponse,
)
async def download_archive(
    backup_id: BackupId, request: Request, svc: Service, principal: Downloader
) -> StreamingResponse:
    record = await completed(svc, backup_id)
    try:
        manifest, parts, size = await svc.archive(record)
    except CorruptManifest as exc:
        raise Problem(409, str(exc)) from None
    await audit(svc, request, principal, "backup.download", f"backup:{record.id}", bytes=size)
    chunks = archive.stream(svc.s3, svc.settings.backup_bucket, manifest, parts)
    return StreamingResponse(
        chunks,
        media_type="application/x-tar",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="loupe-backup-{record.id}.tar"',
        },
    )


@router.post("/import", status_code=201, summary="Import an archive made by a download")
async def import_archive(request: Request, svc: Service, principal: Writer) -> dict[str, Any]:
    with new_workdir(svc.settings) as directory:
        path = FilePath(directory) / "upload.tar"
        await spool(request, path)
        try:
            record = await svc.import_archive(path, principal.name)
        except archive.ArchiveRefused as exc:
            raise Problem(
                422, f"The archive was refused; nothing was written: {exc}", title="Archive refused"
            ) from None
    await audit(svc, request, principal, "backup.import", f"backup:{record.id}")
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
