"""One answer to "is this image stored": the catalog's image record, or — when the
`images.stored` event has not arrived yet — the images service itself, whose answer is then
kept as the record. Every reference the catalog makes to an image (a program's master, a
golden set's capture) asks here."""

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog.image_records import repository as image_records
from loupe_shared.kit.problems import Problem


class ImagesClient:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def metadata(
        self, sha256: str, *, authorization: str, request_id: str | None
    ) -> dict[str, Any] | None:
        headers = {"Authorization": authorization}
        if request_id:
            headers["X-Request-Id"] = request_id
        try:
            answer = await self._client.get(f"/api/images/{sha256}/metadata", headers=headers)
        except httpx.HTTPError:
            raise Problem(
                503,
                "The images service cannot be reached to check the image; try again.",
                headers={"Retry-After": "5"},
            ) from None
        if answer.status_code == 404:
            return None
        if answer.status_code in (401, 403):
            raise Problem(
                403,
                "The image is not known to the catalog yet, and checking it with the images "
                "service needs images:read.",
            )
        if answer.status_code != 200:
            raise Problem(
                503,
                f"The images service answered {answer.status_code} about the image; try again.",
                headers={"Retry-After": "5"},
            )
        data: dict[str, Any] = answer.json()
        return data

    async def close(self) -> None:
        await self._client.aclose()


async def is_stored(
    session: AsyncSession,
    images: ImagesClient,
    sha256: str,
    *,
    authorization: str,
    request_id: str | None,
) -> bool:
    """Whether `sha256` is a stored image. Call it after taking the image's reference lock,
    so the record written here cannot race a deletion."""
    record = await image_records.get(session, sha256)
    if record is not None and record["deleted_at"] is None:
        return True
    meta = await images.metadata(sha256, authorization=authorization, request_id=request_id)
    if meta is None:
        return False
    await image_records.upsert(
        session,
        {
            "sha256": sha256,
            "size": int(meta["size"]),
            "width": int(meta["width"]),
            "height": int(meta["height"]),
            "content_type": str(meta["content_type"]),
            "kind": str(meta.get("kind", "master")),
            "line_id": str(meta.get("line_id", "")),
            "thumbnails": meta.get("thumbnails", []),
            "source": "images-service",
        },
    )
    return True
