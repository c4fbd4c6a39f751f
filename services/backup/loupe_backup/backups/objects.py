"""Object-store calls (synchronous: the `minio` SDK blocks; callers run these in threads)."""

import hashlib
import html
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from minio import Minio
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

from loupe_shared.kit import s3 as s3kit

_MISSING = s3kit.MISSING
CHUNK = 1024 * 1024
_META_PREFIX = "x-amz-meta-"
T = TypeVar("T")


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


_CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.S)
_FIELD = {
    name: re.compile(rb"<%s>(.*?)</%s>" % (name, name), re.S) for name in (b"Key", b"Size", b"ETag")
}
_TRUNCATED = re.compile(rb"<IsTruncated>true</IsTruncated>")
_TOKEN = re.compile(rb"<NextContinuationToken>(.*?)</NextContinuationToken>", re.S)


def _text(pattern: re.Pattern[bytes], xml: bytes) -> str:
    found = pattern.search(xml)
    return html.unescape(found.group(1).decode()) if found else ""


def listing(s3: Minio, bucket: str, prefix: str) -> Iterator[Listed]:
    """Every object under `prefix` (recursively): key, size, ETag.

    ListObjectsV2 pages read with three regular expressions: the SDK's XML parsing (a
    timestamp parse per object) costs about 0.1 ms an object, which was most of an
    incremental backup of an unchanged installation.
    """
    token = ""
    while True:
        query: dict[str, str | list[str] | tuple[str]] = {
            "list-type": "2",
            "max-keys": "1000",
            "prefix": prefix,
            "delimiter": "",
        }
        if token:
            query["continuation-token"] = token
        response = s3._url_open(
            "GET", s3._get_region(bucket), bucket_name=bucket, query_params=query
        )
        body = response.data
        for contents in _CONTENTS.finditer(body):
            entry = contents.group(1)
            key = _text(_FIELD[b"Key"], entry)
            if key and not key.endswith("/"):
                yield Listed(
                    key,
                    int(_text(_FIELD[b"Size"], entry) or 0),
                    _text(_FIELD[b"ETag"], entry).strip('"'),
                )
        if not _TRUNCATED.search(body):
            return
        token = _text(_TOKEN, body)
        if not token:
            return


def _read(s3: Minio, bucket: str, key: str, consume: Callable[[BaseHTTPResponse], T]) -> T | None:
    """`consume` applied to the object's GET response, which is then released; None when the
    object is missing."""
    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in _MISSING:
            return None
        raise
    try:
        return consume(response)
    finally:
        response.close()
        response.release_conn()


def _hash_chunks(
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


def fetch(s3: Minio, bucket: str, key: str) -> Fetched | None:
    """The object's bytes, SHA-256, type and user metadata; None when it is missing."""
    found = _read(s3, bucket, key, lambda response: (response.read(), response.headers))
    if found is None:
        return None
    data, headers = found
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
    return _read(s3, bucket, key, _hash_chunks)


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

    def write(response: BaseHTTPResponse) -> tuple[str, int]:
        with path.open("wb") as out:
            return _hash_chunks(response, out.write)

    return _read(s3, bucket, key, write)


def stream(s3: Minio, bucket: str, key: str) -> Iterator[bytes]:
    response = s3.get_object(bucket, key)
    try:
        yield from response.stream(CHUNK)
    finally:
        response.close()
        response.release_conn()


def get_bytes(s3: Minio, bucket: str, key: str) -> bytes | None:
    return _read(s3, bucket, key, lambda response: response.read())


remove = s3kit.remove


def read_sha256(source: IO[bytes]) -> tuple[str, int]:
    """The SHA-256 and length of what is left to read from `source`."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def file_sha256(path: Path) -> tuple[str, int]:
    with path.open("rb") as source:
        return read_sha256(source)
