"""S3 client factory (the `minio` SDK speaks to MinIO, SeaweedFS or any S3 service).

The SDK is synchronous: call it through `asyncio.to_thread` from async code.
"""

import asyncio
import hashlib
import io
from collections.abc import Callable
from typing import Any, TypeVar, cast

import urllib3
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from minio import Minio
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

from loupe_shared.contracts.images import image_blob_key as image_blob_key
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import problem_response
from loupe_shared.kit.settings import S3Settings


def client(settings: S3Settings) -> Minio:
    """A client that gives up quickly when the object store is down (a request then fails
    within seconds instead of hanging in retries), and retries briefly on 5xx answers."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3.0, read=60.0),
        maxsize=32,
        retries=urllib3.Retry(
            total=2, connect=1, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
        ),
    )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
        http_client=http,
    )


# What the SDK raises when the object store cannot be reached or answers 5xx.
UNAVAILABLE: tuple[type[Exception], ...] = (urllib3.exceptions.HTTPError, ConnectionError)
# S3 error codes for an object that is not there (they differ between servers).
MISSING = ("NoSuchKey", "NotFound", "NoSuchObject")


# The images bucket's layout is a contract (`loupe_shared.contracts.images`); the name stays
# importable from here (the re-export above) until its last importers (inspect, backup
# exports) move.

CHUNK = 1024 * 1024
T = TypeVar("T")


def exists(s3: Minio, bucket: str, key: str) -> bool:
    try:
        s3.stat_object(bucket, key)
    except S3Error as exc:
        if exc.code in MISSING:
            return False
        raise
    return True


def read_object(
    s3: Minio, bucket: str, key: str, consume: Callable[[BaseHTTPResponse], T]
) -> T | None:
    """`consume` applied to the object's GET response, which is then released; None when the
    object is missing."""
    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in MISSING:
            return None
        raise
    try:
        return consume(response)
    finally:
        response.close()
        response.release_conn()


def get_bytes(s3: Minio, bucket: str, key: str) -> bytes | None:
    """The object's bytes; None when it is missing."""
    return read_object(s3, bucket, key, lambda response: bytes(response.read()))


def hash_chunks(
    response: BaseHTTPResponse, write: Callable[[bytes], object] | None = None
) -> tuple[str, int]:
    """The SHA-256 and length of a streamed response, each chunk also given to `write`."""
    digest = hashlib.sha256()
    size = 0
    for chunk in response.stream(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if write is not None:
            write(chunk)
    return digest.hexdigest(), size


def hash_object(s3: Minio, bucket: str, key: str) -> tuple[str, int] | None:
    """The SHA-256 and length of what is stored at `key`, read as a stream; None when it is
    missing."""
    return read_object(s3, bucket, key, hash_chunks)


def put_bytes(
    s3: Minio,
    bucket: str,
    key: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> None:
    """Store `data` at `key` in one PUT (an interrupted write leaves no partial multipart
    upload behind), with user metadata."""
    s3.put_object(
        bucket,
        key,
        io.BytesIO(data),
        len(data),
        part_size=max(len(data), 5 * CHUNK),
        content_type=content_type,
        metadata=cast(Any, metadata or None),
    )


def remove(s3: Minio, bucket: str, key: str) -> None:
    """Remove `key`; removing what is not there is not an error."""
    try:
        s3.remove_object(bucket, key)
    except S3Error as exc:
        if exc.code not in MISSING:
            raise


def answer_unavailable_with_503(app: FastAPI, service: str) -> None:
    """An unreachable object store is a 503 problem that says nothing was changed."""
    log = get_logger(f"{service}.app")

    async def storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning(f"{service}.object_store_unavailable", error=str(exc))
        return problem_response(
            request,
            503,
            "The object store cannot be reached; nothing was changed. Try again shortly.",
            headers={"Retry-After": "5"},
        )

    for error in UNAVAILABLE:
        app.add_exception_handler(error, storage_unavailable)


def ensure_bucket_sync(s3: Minio, bucket: str) -> bool:
    """Create `bucket` when missing; answer whether it was created."""
    if s3.bucket_exists(bucket):
        return False
    s3.make_bucket(bucket)
    return True


async def ensure_bucket(s3: Minio, bucket: str) -> bool:
    return await asyncio.to_thread(ensure_bucket_sync, s3, bucket)


async def bucket_reachable(s3: Minio, bucket: str) -> None:
    """Raise unless the bucket exists and the credentials are accepted."""
    if not await asyncio.to_thread(s3.bucket_exists, bucket):
        raise RuntimeError(f"bucket {bucket} does not exist")
