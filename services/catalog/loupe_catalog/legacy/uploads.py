"""Sending master images to the images service: only those it does not hold already, each
with its SHA-256 so the service checks it received exactly these bytes."""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from loupe_catalog.legacy.images import MasterImage
from loupe_shared.kit.problems import Problem

EXISTS_BATCH = 1000


@dataclass(frozen=True)
class Sent:
    sha256: str
    sent: bool
    refused: str | None = None
    # Not stored when read back after the upload.
    missing: bool = False


def _unavailable(what: str) -> Problem:
    return Problem(
        503,
        f"The images service {what}; nothing was migrated. Run the migration again.",
        headers={"Retry-After": "5"},
    )


class Uploader:
    def __init__(
        self, base_url: str, *, authorization: str, request_id: str | None, concurrency: int
    ) -> None:
        headers = {"Authorization": authorization}
        if request_id:
            headers["X-Request-Id"] = request_id
        self._client = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60.0)
        self._gate = asyncio.Semaphore(concurrency)

    async def __aenter__(self) -> "Uploader":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    async def present(self, hashes: Iterable[str]) -> set[str]:
        """Which of these hashes the images service stores."""
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        for start in range(0, len(wanted), EXISTS_BATCH):
            batch = wanted[start : start + EXISTS_BATCH]
            try:
                answer = await self._client.post("/api/images/exists", json={"sha256": batch})
            except httpx.HTTPError:
                raise _unavailable("cannot be reached") from None
            if answer.status_code != 200:
                raise _unavailable(f"answered {answer.status_code} to an existence check")
            found.update(answer.json()["present"])
        return found

    async def send(self, image: MasterImage, filename: str) -> Sent:
        async with self._gate:
            try:
                answer = await self._client.post(
                    "/api/images",
                    params={"kind": "master", "filename": filename},
                    content=image.data,
                    headers={
                        "Content-Type": image.content_type,
                        "X-Content-SHA256": image.sha256,
                    },
                )
            except httpx.HTTPError:
                raise _unavailable("cannot be reached") from None
        if answer.status_code in (200, 201):
            body: dict[str, Any] = answer.json()
            if body.get("sha256") != image.sha256:
                return Sent(image.sha256, True, "the images service stored other bytes")
            return Sent(image.sha256, answer.status_code == 201)
        if 400 <= answer.status_code < 500 and answer.status_code not in (401, 403, 429):
            try:
                detail = str(answer.json().get("detail", ""))
            except ValueError:
                detail = answer.text[:200]
            return Sent(image.sha256, False, detail or f"refused ({answer.status_code})")
        if answer.status_code in (401, 403):
            raise Problem(
                403, "Uploading the master images needs images:write; nothing was migrated."
            )
        raise _unavailable(f"answered {answer.status_code} to an upload")
