import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response

from loupe_catalog import pagination
from loupe_catalog.programs import config as config_schema
from loupe_catalog.programs import service
from loupe_catalog.programs.schemas import (
    ArchivedFilter,
    ConfigSchema,
    Program,
    ProgramCreate,
    ProgramPage,
    ProgramWrite,
    Revision,
    RevisionDiff,
    RevisionPage,
    RevisionSummary,
    SortKey,
)
from loupe_catalog.state import Images
from loupe_shared.contracts.bounds import INT32_MAX, StorableStr
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.db import ReadPool, Session
from loupe_shared.kit.responses import FastJSONResponse

router = APIRouter(prefix="/api/programs", tags=["programs"])
CanRead = Annotated[Principal, Depends(require(Permission.PROGRAMS_READ))]
CanWrite = Annotated[Principal, Depends(require(Permission.PROGRAMS_WRITE))]
IfMatch = Annotated[str | None, Header(description="the ETag you last read")]
RevisionNumber = Annotated[int, Path(ge=1, le=INT32_MAX)]


class _Row(Protocol):
    """A program row read by column name: a SQLAlchemy `RowMapping` from a write, an asyncpg
    `Record` from the hot read path."""

    def __getitem__(self, key: str, /) -> Any: ...

    def __contains__(self, key: object, /) -> bool: ...


def _config(row: _Row) -> Any:
    """The config of a row: decoded from a write, JSON text (embedded as is) from the hot
    read path's query."""
    if "config_json" in row:
        return orjson.Fragment(row["config_json"])
    return row["config"]


def _program(row: _Row, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The program document. Built by hand (the hot read path): no second validation pass."""
    body = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "tags": row["tags"],
        "archived": row["archived_at"] is not None,
        "archived_at": row["archived_at"],
        "revision": row["current_revision"],
        "schema_version": row["schema_version"],
        "config": _config(row),
        "master_image_sha256": row["master_image_sha256"],
        "data_checksum": row["data_checksum"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "last_backup_at": row["last_backup_at"],
        "migration_status": row["migration_status"],
        "legacy_id": row["legacy_id"],
        "version": row["version"],
    }
    all_headers = {"ETag": service.etag(row["id"], row["version"]), **(headers or {})}
    return FastJSONResponse(body, status_code=status_code, headers=all_headers)


@router.get(
    "/config-schema",
    response_model=ConfigSchema,
    summary="The JSON schema every program config is validated against",
)
async def get_config_schema(_: CanRead) -> dict[str, Any]:
    return {"schema_version": config_schema.CURRENT_VERSION, "schema": config_schema.json_schema()}


@router.post(
    "", status_code=201, response_model=Program, summary="Create a program (its revision 1)"
)
async def create_program(
    data: ProgramCreate, request: Request, session: Session, images: Images, principal: CanWrite
) -> Response:
    row = await service.create(session, data, Actor.of(request, principal), images)
    return _program(row, 201, {"Location": f"/api/programs/{row['id']}"})


@router.get("", response_model=ProgramPage, summary="List programs (cursor pagination)")
async def list_programs(
    pool: ReadPool,
    _: CanRead,
    q: Annotated[StorableStr | None, Query(max_length=200, description="part of the name")] = None,
    tag: Annotated[StorableStr | None, Query(max_length=64)] = None,
    archived: ArchivedFilter = "false",
    sort: SortKey = "name",
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = pagination.DEFAULT_PAGE,
) -> Response:
    rows, next_cursor = await service.list_page(
        pool, sort=sort, cursor=cursor, limit=limit, search=q, tag=tag, archived=archived
    )
    items = []
    for row in rows:
        item = dict(row)
        del item["sort_key"]
        items.append(item)
    return FastJSONResponse({"items": items, "next_cursor": next_cursor})


@router.get("/{program_id}", response_model=Program, summary="A program with its current revision")
async def get_program(program_id: uuid.UUID, pool: ReadPool, _: CanRead) -> Response:
    return _program(await service.fetch(pool, program_id))


@router.put(
    "/{program_id}",
    response_model=Program,
    summary="Save a program: a new immutable revision (needs If-Match)",
)
async def update_program(
    program_id: uuid.UUID,
    data: ProgramWrite,
    request: Request,
    session: Session,
    images: Images,
    principal: CanWrite,
    if_match: IfMatch = None,
) -> Response:
    row = await service.update(
        session, program_id, data, if_match, Actor.of(request, principal), images
    )
    return _program(row)


def _archiver(archived: bool) -> Callable[..., Awaitable[Response]]:
    async def set_archived(
        program_id: uuid.UUID,
        request: Request,
        session: Session,
        principal: CanWrite,
        if_match: IfMatch = None,
    ) -> Response:
        actor = Actor.of(request, principal)
        return _program(await service.set_archived(session, program_id, archived, if_match, actor))

    return set_archived


router.add_api_route(
    "/{program_id}/archive",
    _archiver(True),
    methods=["POST"],
    response_model=Program,
    name="archive_program",
    summary="Archive a program: it frees its name and becomes read-only (needs If-Match)",
)
router.add_api_route(
    "/{program_id}/unarchive",
    _archiver(False),
    methods=["POST"],
    response_model=Program,
    name="unarchive_program",
    summary="Bring an archived program back (needs If-Match)",
)


@router.get("/{program_id}/revisions", summary="The revision history, newest first")
async def list_revisions(
    program_id: uuid.UUID,
    session: Session,
    _: CanRead,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = pagination.DEFAULT_PAGE,
) -> RevisionPage:
    rows, next_cursor = await service.revisions(session, program_id, cursor, limit)
    items = [RevisionSummary.model_validate(dict(row)) for row in rows]
    return RevisionPage(items=items, next_cursor=next_cursor)


@router.get("/{program_id}/revisions/{revision}", summary="One revision, exactly as it was saved")
async def get_revision(
    program_id: uuid.UUID, revision: RevisionNumber, session: Session, _: CanRead
) -> Revision:
    row = await service.revision(session, program_id, revision)
    return Revision.model_validate({**dict(row), "tags": list(row["tags"])})


@router.get("/{program_id}/diff", summary="What changed between two revisions")
async def diff_revisions(
    program_id: uuid.UUID,
    session: Session,
    _: CanRead,
    from_: Annotated[int, Query(alias="from", ge=1, le=INT32_MAX)],
    to: Annotated[int, Query(ge=1, le=INT32_MAX)],
) -> RevisionDiff:
    return RevisionDiff.model_validate(await service.diff(session, program_id, from_, to))
