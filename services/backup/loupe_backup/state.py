"""The backup app's own state, typed: made once in the lifespan, answered to handlers by the
`BackupState` dependency (`app.state` itself is untyped, and kit middleware reads its own
entries there)."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from minio import Minio
from sqlalchemy.ext.asyncio import AsyncEngine

from loupe_backup.backups.ratelimit import RateLimiter
from loupe_backup.backups.service import BackupService
from loupe_backup.schedules.scheduler import Scheduler
from loupe_backup.settings import BackupSettings


@dataclass(frozen=True)
class AppState:
    settings: BackupSettings
    engine: AsyncEngine
    s3: Minio
    rate_limiter: RateLimiter
    backups: BackupService
    scheduler: Scheduler


def install(app: FastAPI, state: AppState) -> None:
    app.state.backup = state


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.backup
    return state


def backup_service(request: Request) -> BackupService:
    return app_state(request).backups


def scheduler(request: Request) -> Scheduler:
    return app_state(request).scheduler


BackupState = Annotated[AppState, Depends(app_state)]
Backups = Annotated[BackupService, Depends(backup_service)]
Schedules = Annotated[Scheduler, Depends(scheduler)]
