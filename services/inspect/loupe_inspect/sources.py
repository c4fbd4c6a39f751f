"""Where an inspection's inputs come from: program revisions from the catalog's API, image
bytes from the object store (content-addressed blobs, read straight from the images bucket).

`Rejected` means the request can never succeed (the answer is an `error` result); any other
exception is passing (the request is delivered again)."""

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from minio import Minio
from minio.error import S3Error

from loupe_inspect.pipeline.config import InspectionConfig
from loupe_shared.kit import s3 as s3kit


class Rejected(Exception):
    """The request cannot be inspected; the message says why (it becomes the reason)."""


class Unavailable(Exception):
    """A dependency cannot answer right now."""


@dataclass(frozen=True)
class ProgramRevision:
    program_id: uuid.UUID
    revision: int
    master_image_sha256: str | None
    config: InspectionConfig


def _revision(program_id: uuid.UUID, body: dict[str, Any], number: int) -> ProgramRevision:
    try:
        config = InspectionConfig.model_validate(body.get("config") or {})
    except ValueError as exc:
        raise Rejected(
            f"revision {number} of program {program_id} has a config the inspection cannot "
            f"read: {exc}"
        ) from None
    return ProgramRevision(
        program_id=program_id,
        revision=number,
        master_image_sha256=body.get("master_image_sha256"),
        config=config,
    )


def _client(base_url: str, token: str, timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, timeout=timeout_s, headers={"Authorization": f"Bearer {token}"}
    )


class Catalog:
    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._client = _client(base_url, token, timeout_s)

    async def _get(self, path: str, **params: Any) -> httpx.Response | None:
        try:
            answer = await self._client.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the catalog cannot be reached: {exc}") from exc
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise Unavailable(f"the catalog answered {answer.status_code} for {path}")
        return answer

    async def current(self, program_id: uuid.UUID) -> ProgramRevision:
        answer = await self._get(f"/api/programs/{program_id}")
        if answer is None:
            raise Rejected(f"program {program_id} does not exist")
        body = answer.json()
        return _revision(program_id, body, int(body["revision"]))

    async def revision(self, program_id: uuid.UUID, number: int) -> ProgramRevision:
        answer = await self._get(f"/api/programs/{program_id}/revisions/{number}")
        if answer is None:
            raise Rejected(f"revision {number} of program {program_id} does not exist")
        return _revision(program_id, answer.json(), number)

    async def active_masters(self, limit: int = 1000) -> list[tuple[uuid.UUID, int, str]]:
        """(program, current revision, master) of active programs, most recently changed
        first."""
        found: list[tuple[uuid.UUID, int, str]] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"sort": "-updated_at", "limit": 100}
            if cursor:
                params["cursor"] = cursor
            answer = await self._get("/api/programs", **params)
            if answer is None:
                break
            page = answer.json()
            for item in page["items"]:
                if item.get("master_image_sha256"):
                    found.append(
                        (uuid.UUID(item["id"]), int(item["revision"]), item["master_image_sha256"])
                    )
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found[:limit]

    async def close(self) -> None:
        await self._client.aclose()


class Blobs:
    """Image bytes from the images bucket (the SDK is synchronous: run in threads)."""

    def __init__(self, s3: Minio, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def _read(self, sha256: str) -> bytes | None:
        try:
            response = self._s3.get_object(self._bucket, s3kit.image_blob_key(sha256))
        except S3Error as exc:
            if exc.code in s3kit.MISSING:
                return None
            raise Unavailable(f"the object store answered {exc.code}") from exc
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    async def read(self, sha256: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._read, sha256)
        except Unavailable:
            raise
        except Exception as exc:  # urllib3 and connection errors
            raise Unavailable(f"the object store cannot be reached: {exc}") from exc


class Images:
    """Stores overlay images through the images service (which validates, hashes, dedups,
    thumbnails and announces them like any upload)."""

    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._client = _client(base_url, token, timeout_s)

    async def store_overlay(self, data: bytes, *, line_id: str, request_id: uuid.UUID) -> str:
        # The images service takes masters and captures; an overlay is a capture tagged so.
        try:
            answer = await self._client.post(
                "/api/images",
                params={
                    "kind": "capture",
                    "tags": "overlay",
                    "line_id": line_id,
                    "filename": f"overlay-{request_id}.jpg",
                },
                content=data,
                headers={"Content-Type": "image/jpeg"},
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"the images service cannot be reached: {exc}") from exc
        if answer.status_code not in (200, 201):
            raise Unavailable(f"the images service answered {answer.status_code} to the overlay")
        return str(answer.json()["sha256"])

    async def close(self) -> None:
        await self._client.aclose()
