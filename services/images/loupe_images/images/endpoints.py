import asyncio
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from minio import Minio
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from loupe_images.images import multipart, service, storage, thumbnails
from loupe_images.images.deletion import Deleter
from loupe_images.images.thumbnailer import Thumbnailer
from loupe_images.settings import MAX_GC_GRACE_S, ImagesSettings
from loupe_shared.contracts.bounds import NulFreeStr, PositiveInt32
from loupe_shared.contracts.results import LINE_ID
from loupe_shared.kit import s3 as s3_kit
from loupe_shared.kit.audit import publish_audit
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.problems import Problem

router = APIRouter(prefix="/api/images", tags=["images"])
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
CanRead = Annotated[Principal, Depends(require(Permission.IMAGES_READ))]
CanWrite = Annotated[Principal, Depends(require(Permission.IMAGES_WRITE))]
CanDelete = Annotated[Principal, Depends(require(Permission.IMAGES_DELETE))]
CanManage = Annotated[Principal, Depends(require(Permission.STORAGE_MANAGE))]
TAG = r"^[A-Za-z0-9][A-Za-z0-9 _.:/\-]{0,63}$"
CACHE_FOREVER = "public, max-age=31536000, immutable"
_RANGE = re.compile(r"([0-9]*)-([0-9]*)")


class UploadOptions(BaseModel):
    """What an upload says about its image: as query parameters, or as multipart form fields
    beside the file (a form field wins) — checked the same either way."""

    kind: Literal["master", "capture"] = "master"
    # Empty: not from a line (a master image uploaded by hand).
    line_id: Annotated[str, Field(pattern=f"^$|{LINE_ID}")] = ""
    tags: list[Annotated[str, StringConstraints(pattern=TAG)]] = Field(
        default_factory=list, max_length=32
    )
    filename: Annotated[NulFreeStr, Field(max_length=500)] = ""


def _form_options(query: UploadOptions, fields: dict[str, list[str]]) -> UploadOptions:
    values: dict[str, object] = query.model_dump()
    for name in ("kind", "line_id", "filename"):
        if name in fields:
            values[name] = fields[name][0]
    if "tags" in fields:
        values["tags"] = fields["tags"]
    try:
        return UploadOptions.model_validate(values)
    except ValidationError as exc:
        errors = [
            {"field": "form:" + ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        raise Problem(
            422,
            f"{errors[0]['field']}: {errors[0]['message']}",
            title="Validation failed",
            errors=errors,
        ) from None


def _settings(request: Request) -> ImagesSettings:
    settings: ImagesSettings = request.app.state.settings
    return settings


@router.post(
    "",
    summary="Upload an image (raw body or multipart `file`); the same bytes are stored once",
    responses={
        200: {"description": "already stored (duplicate: true)"},
        201: {"description": "stored"},
    },
)
async def upload_image(
    request: Request,
    principal: CanWrite,
    options: Annotated[UploadOptions, Query()],
    content_type: Annotated[str | None, Header()] = None,
    x_content_sha256: Annotated[str | None, Header(pattern=r"^[0-9a-fA-F]{64}$")] = None,
) -> JSONResponse:
    settings = _settings(request)
    declared = (content_type or "").split(";")[0].strip().lower() or None
    if declared == "multipart/form-data":
        form = await multipart.receive(request.stream(), content_type or "", settings)
        spool, sha256, size = form.spool, form.sha256, form.size
        declared = form.content_type
        fields = {"filename": [form.filename], **form.fields} if form.filename else form.fields
        try:
            options = _form_options(options, fields)
        except Problem:
            spool.close()
            raise
    else:
        spool, sha256, size = await service.receive(request.stream(), settings)
    request_id = request.scope["state"].get("request_id")
    try:
        image, thumbs, duplicate = await service.store(
            spool=spool,
            sha256=sha256,
            size=size,
            declared_type=declared,
            declared_sha256=x_content_sha256,
            kind=options.kind,
            filename=options.filename,
            line_id=options.line_id,
            tags=options.tags,
            settings=settings,
            s3=request.app.state.s3,
            js=request.app.state.js,
            thumbnailer=request.app.state.thumbnailer,
            request_id=request_id,
        )
    finally:
        spool.close()
    if not duplicate:
        await publish_audit(
            request.app.state.js,
            principal,
            action="images.upload",
            target=f"image:{sha256}",
            request_id=request_id,
            namespace=settings.namespace,
            details={"size": size, "kind": options.kind},
        )
    return JSONResponse(
        {**image.as_dict(), "thumbnails": thumbs, "duplicate": duplicate},
        status_code=200 if duplicate else 201,
        headers={"Location": f"/api/images/{sha256}", "ETag": f'"{sha256}"'},
    )


async def _stat(request: Request, sha256: str) -> storage.StoredImage:
    settings = _settings(request)
    found = await asyncio.to_thread(
        storage.stat, request.app.state.s3, settings.images_bucket, sha256
    )
    if found is None:
        raise Problem(404, f"No image {sha256}.")
    return found


@router.get("/{sha256}/metadata", summary="What is stored for an image")
async def image_metadata(sha256: Sha256, request: Request, _: CanRead) -> dict[str, Any]:
    return (await _stat(request, sha256)).as_dict()


class ExistsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: list[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]] = Field(
        max_length=1000
    )


@router.post("/exists", summary="Which of up to 1,000 hashes are stored already")
async def images_exist(query: ExistsQuery, request: Request, _: CanRead) -> dict[str, list[str]]:
    settings = _settings(request)
    s3: Minio = request.app.state.s3
    gate = asyncio.Semaphore(16)

    async def present(sha256: str) -> bool:
        async with gate:
            return (
                await asyncio.to_thread(storage.stat, s3, settings.images_bucket, sha256)
                is not None
            )

    wanted = list(dict.fromkeys(query.sha256))
    found = await asyncio.gather(*(present(sha) for sha in wanted))
    return {
        "present": [sha for sha, hit in zip(wanted, found, strict=True) if hit],
        "missing": [sha for sha, hit in zip(wanted, found, strict=True) if not hit],
    }


@router.get("/{sha256}/status", summary="Thumbnail processing status, with the error text")
async def image_status(sha256: Sha256, request: Request, _: CanRead) -> dict[str, Any]:
    await _stat(request, sha256)
    thumbnailer: Thumbnailer = request.app.state.thumbnailer
    status = await thumbnailer.status(sha256)
    return {"sha256": sha256, **(status or {"state": "pending", "error": None, "thumbnails": []})}


@router.get(
    "/{sha256}/thumbnail",
    summary="A WebP thumbnail (longest side 256 or 1024 px); regenerated when missing",
    response_class=Response,
)
async def get_thumbnail(
    sha256: Sha256,
    request: Request,
    _: CanRead,
    size: Annotated[
        PositiveInt32, Query(description="the longest side in pixels: 256 or 1024")
    ] = 256,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    if size not in thumbnails.SIZES:
        raise Problem(
            422,
            f"query:size: must be one of {', '.join(map(str, thumbnails.SIZES))}",
            title="Validation failed",
            errors=[{"field": "query:size", "message": "256 or 1024"}],
        )
    etag = f'"{sha256}-{size}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_FOREVER}
    if if_none_match and etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    thumbnailer: Thumbnailer = request.app.state.thumbnailer
    cached = thumbnailer.cached(sha256, size)
    if cached is not None and cached[1]:
        return Response(cached[0], media_type="image/webp", headers=headers)
    try:
        image = await _stat(request, sha256)
    except s3_kit.UNAVAILABLE:
        if cached is None:
            raise
        # The object store is down: a thumbnail served before is still the right one.
        return Response(cached[0], media_type="image/webp", headers=headers)
    except Problem:
        thumbnailer.cache.discard(sha256)
        raise
    if cached is not None:
        thumbnailer.cache.touch(sha256, size)
        return Response(cached[0], media_type="image/webp", headers=headers)
    data = await thumbnailer.get(image, size)
    if data is None:
        raise Problem(422, "No thumbnail can be made from this image; see its status.")
    return Response(data, media_type="image/webp", headers=headers)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The one range asked for, as (start, end inclusive); None to send everything."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None  # several ranges: answering the whole body is allowed
    # A range that does not parse is ignored (RFC 9110): the whole body is answered.
    parsed = _RANGE.fullmatch(spec.strip())
    if parsed is None or parsed.group(1) == parsed.group(2) == "":
        return None
    first, last = parsed.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), (int(last) if last else size - 1)
    if start >= size or end < start:
        raise Problem(
            416,
            "The range is outside the image.",
            title="Range not satisfiable",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, min(end, size - 1)


@router.head("/{sha256}", summary="The image's headers", operation_id="head_image")
@router.get("/{sha256}", summary="The image bytes (immutable)", operation_id="get_image")
async def get_image(
    sha256: Sha256,
    request: Request,
    _: CanRead,
    if_none_match: Annotated[str | None, Header()] = None,
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_FOREVER}
    if if_none_match and etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]:
        await _stat(request, sha256)
        return Response(status_code=304, headers=headers)
    image = await _stat(request, sha256)
    headers["Accept-Ranges"] = "bytes"
    selected = _byte_range(range_, image.size) if range_ else None
    start, end = selected or (0, image.size - 1)
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if selected is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{image.size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=image.content_type)
    s3: Minio = request.app.state.s3
    bucket = _settings(request).images_bucket
    upstream = await asyncio.to_thread(
        s3.get_object, bucket, storage.blob_key(sha256), offset=start, length=end - start + 1
    )

    def body() -> Iterator[bytes]:
        try:
            yield from upstream.stream(256 * 1024)
        finally:
            upstream.close()
            upstream.release_conn()

    return StreamingResponse(
        body(), status_code=status, media_type=image.content_type, headers=headers
    )


@router.delete(
    "/{sha256}",
    summary="Delete an image (refused while a program revision uses it, unless an admin forces)",
    status_code=204,
    responses={
        204: {"description": "deleted, with its thumbnails"},
        403: {"description": "force needs images:force-delete"},
        409: {"description": "program revisions use the image; they are listed"},
    },
)
async def delete_image(
    sha256: Sha256,
    request: Request,
    principal: CanDelete,
    force: bool = False,
) -> Response:
    if force and Permission.IMAGES_FORCE_DELETE not in principal.permissions:
        raise Problem(403, "Only an admin may force the deletion of a referenced image.")
    await _stat(request, sha256)
    deleter: Deleter = request.app.state.deleter
    request_id = request.scope["state"].get("request_id")
    reply = await deleter.delete(sha256, force=force, request_id=request_id)
    if sha256 not in reply.granted:
        uses = reply.referenced.get(sha256, [])
        raise Problem(
            409,
            f"{len(uses)} program revision(s) use this image; archive or change them first"
            " (an admin may force the deletion).",
            title="Image in use",
            references=uses,
        )
    await publish_audit(
        request.app.state.js,
        principal,
        action="images.force_delete" if force else "images.delete",
        target=f"image:{sha256}",
        request_id=request_id,
        namespace=_settings(request).namespace,
        details={"forced": force, "references": reply.referenced.get(sha256, [])},
    )
    return Response(status_code=204)


@router.post(
    "/gc",
    summary="Collect unreferenced blobs older than the grace period now",
    description=(
        "Also runs in the background every `IMAGES_GC_INTERVAL_S`. Each blob is claimed from "
        "the catalog, which re-checks its references just before the deletion. `dry_run` "
        "only reports what would go."
    ),
)
async def collect_garbage(
    request: Request,
    principal: CanManage,
    dry_run: bool = False,
    grace_s: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_GC_GRACE_S,
            allow_inf_nan=False,
            description="override IMAGES_GC_GRACE_S for this run",
        ),
    ] = None,
) -> dict[str, Any]:
    settings = _settings(request)
    deleter: Deleter = request.app.state.deleter
    summary = await deleter.collect(
        grace_s=settings.gc_grace_s if grace_s is None else grace_s, dry_run=dry_run
    )
    if not dry_run:
        await publish_audit(
            request.app.state.js,
            principal,
            action="images.gc",
            target="images",
            request_id=request.scope["state"].get("request_id"),
            namespace=settings.namespace,
            details={k: summary[k] for k in ("grace_s", "collected", "collected_bytes")},
        )
    return summary
