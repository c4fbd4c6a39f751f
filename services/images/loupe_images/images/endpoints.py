"""The images API: handlers parse, call the service layer (`service`, `serving`), shape the
answer."""

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from loupe_images.images import service, serving
from loupe_images.images.schemas import (
    SHA256,
    ExistsAnswer,
    ExistsQuery,
    GcSummary,
    ImageMetadata,
    ImageStatus,
    Uploaded,
    UploadOptions,
)
from loupe_images.settings import MAX_GC_GRACE_S
from loupe_images.state import State, images_state
from loupe_shared.contracts.bounds import PositiveInt32
from loupe_shared.contracts.images import ACCEPTED
from loupe_shared.kit.audit import Actor
from loupe_shared.kit.auth import Permission, Principal, require
from loupe_shared.kit.openapi import binary

router = APIRouter(prefix="/api/images", tags=["images"])
Sha256 = Annotated[str, Path(pattern=SHA256)]
CanRead = Annotated[Principal, Depends(require(Permission.IMAGES_READ))]
CanWrite = Annotated[Principal, Depends(require(Permission.IMAGES_WRITE))]
CanDelete = Annotated[Principal, Depends(require(Permission.IMAGES_DELETE))]
CanManage = Annotated[Principal, Depends(require(Permission.STORAGE_MANAGE))]


# The thumbnail route comes first: a request is matched against the routes in order, and each
# one tried costs a few microseconds (see ThumbnailRoute).
async def get_thumbnail(
    sha256: Sha256,
    state: State,
    _: CanRead,
    size: Annotated[
        PositiveInt32, Query(description="the longest side in pixels: 256 or 1024")
    ] = 256,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return await serving.thumbnail(state, sha256, size, if_none_match)


class ThumbnailRoute(APIRoute):
    """The thumbnail GET is the hottest read (a gallery asks for dozens at once), and solving
    its dependencies per request was most of what it cost. This route answers the plain
    request itself — a well-formed hash, no query but `size=256` or `size=1024` — with the
    same authorization and service call; anything else goes to the declared handler, so every
    validation problem is answered as before."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = _PLAIN_SIZES.get(scope["query_string"])
        sha256 = scope["path_params"].get("sha256", "")
        if scope["method"] != "GET" or size is None or _SHA256.fullmatch(sha256) is None:
            await super().handle(scope, receive, send)
            return
        request = Request(scope, receive)
        await _can_read(request)
        answer = await serving.thumbnail(
            await images_state(request), sha256, size, request.headers.get("if-none-match")
        )
        await answer(scope, receive, send)


_PLAIN_SIZES = {b"": 256, b"size=256": 256, b"size=1024": 1024}
_SHA256 = re.compile(SHA256)
_can_read = require(Permission.IMAGES_READ)
router.add_api_route(
    "/{sha256}/thumbnail",
    get_thumbnail,
    methods=["GET"],
    route_class_override=ThumbnailRoute,
    summary="A WebP thumbnail (longest side 256 or 1024 px); regenerated when missing",
    response_class=Response,
    responses=binary(200, "The thumbnail", "image/webp"),
)


@router.post(
    "",
    summary="Upload an image (raw body or multipart `file`); the same bytes are stored once",
    status_code=201,
    responses={
        200: {"description": "already stored (duplicate: true)", "model": Uploaded},
        201: {"description": "stored"},
    },
)
async def upload_image(
    request: Request,
    response: Response,
    state: State,
    principal: CanWrite,
    options: Annotated[UploadOptions, Query()],
    content_type: Annotated[str | None, Header()] = None,
    x_content_sha256: Annotated[str | None, Header(pattern=r"^[0-9a-fA-F]{64}$")] = None,
) -> Uploaded:
    image, thumbs, pending, duplicate = await service.upload(
        state,
        Actor.of(request, principal),
        request.stream(),
        content_type=content_type,
        options=options,
        declared_sha256=x_content_sha256,
    )
    response.status_code = 200 if duplicate else 201
    response.headers["Location"] = f"/api/images/{image.sha256}"
    response.headers["ETag"] = f'"{image.sha256}"'
    return Uploaded.model_validate(
        {
            **image.as_dict(),
            "thumbnails": thumbs,
            "thumbnails_pending": pending,
            "duplicate": duplicate,
        }
    )


@router.get("/{sha256}/metadata", summary="What is stored for an image")
async def image_metadata(sha256: Sha256, state: State, _: CanRead) -> ImageMetadata:
    return ImageMetadata.model_validate((await service.stored(state, sha256)).as_dict())


@router.post("/exists", summary="Which of up to 1,000 hashes are stored already")
async def images_exist(query: ExistsQuery, state: State, _: CanRead) -> ExistsAnswer:
    present, missing = await service.which_exist(state, query.sha256)
    return ExistsAnswer(present=present, missing=missing)


@router.get("/{sha256}/status", summary="Thumbnail processing status, with the error text")
async def image_status(sha256: Sha256, state: State, _: CanRead) -> ImageStatus:
    return ImageStatus.model_validate(await service.thumbnail_status(state, sha256))


@router.head(
    "/{sha256}",
    summary="The image's headers",
    operation_id="head_image",
    response_class=Response,
    responses=binary(200, "The image's headers, no body", *ACCEPTED),
)
@router.get(
    "/{sha256}",
    summary="The image bytes (immutable)",
    operation_id="get_image",
    response_class=Response,
    responses={
        **binary(200, "The image", *ACCEPTED),
        **binary(206, "The range asked for", *ACCEPTED),
        304: {"description": "Not modified (If-None-Match names the image)"},
    },
)
async def get_image(
    sha256: Sha256,
    request: Request,
    state: State,
    _: CanRead,
    if_none_match: Annotated[str | None, Header()] = None,
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    return await serving.original(
        state,
        sha256,
        head=request.method == "HEAD",
        if_none_match=if_none_match,
        range_header=range_,
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
    state: State,
    principal: CanDelete,
    force: bool = False,
) -> Response:
    await service.delete(state, Actor.of(request, principal), sha256, force=force)
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
    state: State,
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
) -> GcSummary:
    summary = await service.collect_garbage(
        state, Actor.of(request, principal), grace_s=grace_s, dry_run=dry_run
    )
    return GcSummary.model_validate(summary)
