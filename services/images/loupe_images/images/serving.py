"""Serving image bytes and thumbnails: the cache policy (immutable, by ETag), one byte range,
and the bytes streamed from the object store."""

import asyncio
import re
from collections.abc import Iterator

from fastapi.responses import Response, StreamingResponse

from loupe_images.images import service, storage, thumbnails
from loupe_images.state import ImagesState
from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.problems import Problem

CACHE_FOREVER = "public, max-age=31536000, immutable"
STREAM_CHUNK = 256 * 1024
_RANGE = re.compile(r"([0-9]*)-([0-9]*)")


def _matches(etag: str, if_none_match: str | None) -> bool:
    """Whether `If-None-Match` names `etag` (weakly compared)."""
    return bool(if_none_match) and etag in [
        t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")
    ]


def byte_range(header: str, size: int) -> tuple[int, int] | None:
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


async def thumbnail(
    state: ImagesState, sha256: str, size: int, if_none_match: str | None
) -> Response:
    """A WebP thumbnail: from the in-process cache while fresh (or while the object store is
    down), else confirmed against the stored image, else made again."""
    if size not in thumbnails.SIZES:
        raise Problem(
            422,
            f"query:size: must be one of {', '.join(map(str, thumbnails.SIZES))}",
            title="Validation failed",
            errors=[{"field": "query:size", "message": "256 or 1024"}],
        )
    etag = f'"{sha256}-{size}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_FOREVER}
    if _matches(etag, if_none_match):
        return Response(status_code=304, headers=headers)
    thumbnailer = state.thumbnailer
    cached = thumbnailer.cached(sha256, size)
    if cached is not None and cached[1]:
        return Response(cached[0], media_type="image/webp", headers=headers)
    try:
        image = await service.stored(state, sha256)
    except s3kit.UNAVAILABLE:
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


async def original(
    state: ImagesState,
    sha256: str,
    *,
    head: bool,
    if_none_match: str | None,
    range_header: str | None,
) -> Response:
    """The image's bytes (or only their headers), whole or one range, streamed from S3."""
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_FOREVER}
    if _matches(etag, if_none_match):
        await service.stored(state, sha256)
        return Response(status_code=304, headers=headers)
    image = await service.stored(state, sha256)
    headers["Accept-Ranges"] = "bytes"
    selected = byte_range(range_header, image.size) if range_header else None
    start, end = selected or (0, image.size - 1)
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if selected is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{image.size}"
    if head:
        return Response(status_code=status, headers=headers, media_type=image.content_type)
    upstream = await asyncio.to_thread(
        state.s3.get_object,
        state.settings.images_bucket,
        storage.blob_key(sha256),
        offset=start,
        length=end - start + 1,
    )

    def body() -> Iterator[bytes]:
        try:
            yield from upstream.stream(STREAM_CHUNK)
        finally:
            upstream.close()
            upstream.release_conn()

    return StreamingResponse(
        body(), status_code=status, media_type=image.content_type, headers=headers
    )
