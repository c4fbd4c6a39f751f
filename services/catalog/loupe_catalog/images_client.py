"""Asks the images service about an image the catalog has not heard of yet (the
`images.stored` event may still be on its way)."""

from typing import Any

import httpx

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
                503, "The images service cannot be reached to check the master image; try again."
            ) from None
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise Problem(
                503, f"The images service answered {answer.status_code} about the master image."
            )
        data: dict[str, Any] = answer.json()
        return data

    async def close(self) -> None:
        await self._client.aclose()
