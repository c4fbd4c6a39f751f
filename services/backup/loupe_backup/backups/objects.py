"""Object-store calls (synchronous: the `minio` SDK blocks; callers run these in threads)."""

import hashlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from minio import Minio
from urllib3 import BaseHTTPResponse

from loupe_shared.kit import s3 as s3kit

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


_CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.S)
_FIELD = {
    name: re.compile(rb"<%s>(.*?)</%s>" % (name, name), re.S) for name in (b"Key", b"Size", b"ETag")
}
_TRUNCATED = re.compile(rb"<IsTruncated>true</IsTruncated>")
_TOKEN = re.compile(rb"<NextContinuationToken>(.*?)</NextContinuationToken>", re.S)


def _text(pattern: re.Pattern[bytes], xml: bytes) -> str:
    found = pattern.search(xml)
    return html.unescape(found.group(1).decode()) if found else ""


class PrivateListObjectsV2:
    """ListObjectsV2 pages fetched through the minio SDK's private `Minio._url_open`, their
    XML read with three regular expressions.

    The SDK's own `list_objects` parses each entry (a timestamp parse per object), which costs
    about 0.1 ms an object: most of an incremental backup of an unchanged installation.

    What this relies on in the pinned SDK (`tests/images/test_s3_seam.py` fails when it
    changes): `Minio._url_open(method, region, bucket_name=..., query_params=...)` answering a
    urllib3 response whose `.data` is the raw XML body, and `Minio._get_region(bucket_name)`.
    The listing is asked without `encoding-type=url`, so keys come XML-escaped only.
    """

    def __init__(self, s3: Minio, *, page_size: int = 1000) -> None:
        self.s3 = s3
        self.page_size = page_size

    def page(self, bucket: str, prefix: str, token: str = "") -> bytes:
        """One ListObjectsV2 answer body (XML), after the continuation `token`."""
        query: dict[str, str | list[str] | tuple[str]] = {
            "list-type": "2",
            "max-keys": str(self.page_size),
            "prefix": prefix,
            "delimiter": "",
        }
        if token:
            query["continuation-token"] = token
        response = self.s3._url_open(
            "GET", self.s3._get_region(bucket), bucket_name=bucket, query_params=query
        )
        return bytes(response.data)

    def __call__(self, bucket: str, prefix: str) -> Iterator[Listed]:
        """Every object under `prefix` (recursively), in key order: key, size, ETag."""
        token = ""
        while True:
            body = self.page(bucket, prefix, token)
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


def listing(s3: Minio, bucket: str, prefix: str) -> Iterator[Listed]:
    """Every object under `prefix` (recursively): key, size, ETag (through the fenced
    `PrivateListObjectsV2`)."""
    return PrivateListObjectsV2(s3)(bucket, prefix)


def fetch(s3: Minio, bucket: str, key: str) -> Fetched | None:
    """The object's bytes, SHA-256, type and user metadata; None when it is missing."""
    found = s3kit.read_object(
        s3, bucket, key, lambda response: (bytes(response.read()), response.headers)
    )
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
    return s3kit.hash_object(s3, bucket, key)


put = s3kit.put_bytes


def put_file(s3: Minio, bucket: str, key: str, path: Path, content_type: str) -> None:
    s3.fput_object(bucket, key, str(path), content_type=content_type)


def download(s3: Minio, bucket: str, key: str, path: Path) -> tuple[str, int] | None:
    """Write an object to `path`; answer its SHA-256 and length (None when missing)."""

    def write(response: BaseHTTPResponse) -> tuple[str, int]:
        with path.open("wb") as out:
            return s3kit.hash_chunks(response, out.write)

    return s3kit.read_object(s3, bucket, key, write)


def stream(s3: Minio, bucket: str, key: str) -> Iterator[bytes]:
    response = s3.get_object(bucket, key)
    try:
        yield from response.stream(CHUNK)
    finally:
        response.close()
        response.release_conn()


get_bytes = s3kit.get_bytes
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
