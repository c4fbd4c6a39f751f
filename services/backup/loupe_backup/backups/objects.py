"""Object-store calls (synchronous: the `minio` SDK blocks; callers run these in threads)."""

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from minio import Minio
from minio.error import S3Error

_MISSING = ("NoSuchKey", "NotFound", "NoSuchObject")
CHUNK = 1024 * 1024
_META_PREFIX = "x-amz-meta-"


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class Fetched:
    data: bytes
    sha256: str
    content_type: str
    metadata: dict[str, str]


def listing(s3: Minio, bucket: str, prefix: str) -> Iterator[Listed]:
    for found in s3.list_objects(bucket, prefix=prefix, recursive=True):
        if found.object_name is not None and not found.is_dir:
            yield Listed(found.object_name, int(found.size or 0), (found.etag or "").strip('"'))


def fetch(s3: Minio, bucket: str, key: str) -> Fetched | None:
    """The object's bytes, SHA-256, type and user metadata; None when it is missing."""
    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in _MISSING:
            return None
        raise
    try:
        data = response.read()
        headers = response.headers
    finally:
        response.close()
        response.release_conn()
    metadata = {
        name.lower().removeprefix(_META_PREFIX): value
        for name, value in headers.items()
        if name.lower().startswith(_META_PREFIX)
    }
    return Fetched(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=headers.get("content-type", "application/octet-stream"),
        metadata=metadata,
    )


def hash_stream(s3: Minio, bucket: str, key: str) -> tuple[str, int] | None:
    """The SHA-256 and length of an object, read as a stream; None when it is missing."""
    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in _MISSING:
            return None
        raise
    digest = hashlib.sha256()
    size = 0
    try:
        for chunk in response.stream(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest(), size


def put(
    s3: Minio,
    bucket: str,
    key: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> None:
    # One PUT per object: an interrupted write leaves nothing behind.
    s3.put_object(
        bucket,
        key,
        io.BytesIO(data),
        len(data),
        part_size=max(len(data), 5 * CHUNK),
        content_type=content_type,
        metadata=cast(Any, metadata or None),
    )


def put_file(s3: Minio, bucket: str, key: str, path: Path, content_type: str) -> None:
    s3.fput_object(bucket, key, str(path), content_type=content_type)


def download(s3: Minio, bucket: str, key: str, path: Path) -> tuple[str, int] | None:
    """Write an object to `path`; answer its SHA-256 and length (None when missing)."""
    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in _MISSING:
            return None
        raise
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as out:
            for chunk in response.stream(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest(), size


def stream(s3: Minio, bucket: str, key: str) -> Iterator[bytes]:
    response = s3.get_object(bucket, key)
    try:
        yield from response.stream(CHUNK)
    finally:
        response.close()
        response.release_conn()


def get_bytes(s3: Minio, bucket: str, key: str) -> bytes | None:
    fetched = fetch(s3, bucket, key)
    return None if fetched is None else fetched.data


def exists(s3: Minio, bucket: str, key: str) -> bool:
    try:
        s3.stat_object(bucket, key)
    except S3Error as exc:
        if exc.code in _MISSING:
            return False
        raise
    return True


def remove(s3: Minio, bucket: str, key: str) -> None:
    try:
        s3.remove_object(bucket, key)
    except S3Error as exc:
        if exc.code not in _MISSING:
            raise


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
