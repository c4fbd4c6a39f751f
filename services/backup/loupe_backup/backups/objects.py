"""Object-store calls (synchronous: the `minio` SDK blocks; callers run these in threads)."""

import copy
import hashlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from minio import Minio
from urllib3 import BaseHTTPResponse

from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.settings import S3Settings

CHUNK = 1024 * 1024
_META_PREFIX = "x-amz-meta-"
# The signed request header that carries the payload's SHA-256 (signature V4).
CONTENT_SHA256 = "x-amz-content-sha256"


class DigestSigningMinio(Minio):
    """The minio client, signing a PUT with the payload SHA-256 its caller already computed.

    Over plain HTTP the SDK hashes every PUT body for its V4 signature. The backup and the
    restore have just hashed those very bytes to check them, so a second pass doubled the
    hashing of every copied object (the most CPU a backup spends). `put_checked` hands the
    digest over in the `x-amz-content-sha256` header; it is the digest of the bytes sent, so
    the request is signed exactly as the SDK would sign it (and a server that checks payloads
    still checks it). Every other request is built by the SDK as before.

    What this relies on in the pinned SDK (`tests/backup/test_digest_signing.py` fails when it
    changes): `Minio._build_headers(host, headers, body, creds)` answering the headers and the
    date, its `x-amz-content-sha256` being what `_url_open` signs.
    """

    def _build_headers(
        self,
        host: str,
        headers: Any = None,
        body: bytes | None = None,
        creds: Any = None,
    ) -> tuple[Any, Any]:
        known = (headers or {}).get(CONTENT_SHA256)
        if not known or not body or creds is None or self._base_url.is_https:
            return super()._build_headers(host, headers, body, creds)
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        built[CONTENT_SHA256] = known
        return built, date


def digest_signing(s3: Minio) -> DigestSigningMinio:
    """The same client (endpoint, credentials, connection pool, retries) as a
    `DigestSigningMinio`."""
    signing = copy.copy(s3)
    signing.__class__ = DigestSigningMinio
    return signing  # type: ignore[return-value]


def client(settings: S3Settings) -> DigestSigningMinio:
    """The kit's client, signing checked copies with the digest already computed."""
    return digest_signing(s3kit.client(settings))


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


_TRUNCATED = re.compile(rb"<IsTruncated>true</IsTruncated>")
_TOKEN = re.compile(rb"<NextContinuationToken>(.*?)</NextContinuationToken>", re.S)
# How an ETag's quotes come in a listing: escaped by the server's XML encoder or not.
_QUOTES = (b"&#34;", b"&quot;", b'"')


def _text(pattern: re.Pattern[bytes], xml: bytes) -> str:
    found = pattern.search(xml)
    return html.unescape(found.group(1).decode()) if found else ""


def _field(entry: bytes, name: bytes) -> bytes:
    """The raw text of `<name>` in one `<Contents>` entry (b"" when it has none)."""
    start = entry.find(b"<%s>" % name)
    if start < 0:
        return b""
    start += len(name) + 2
    end = entry.find(b"</%s>" % name, start)
    return entry[start:end] if end >= 0 else b""


def _unescaped(raw: bytes) -> str:
    text = raw.decode()
    return html.unescape(text) if "&" in text else text


# One `<Contents>` in the order S3 servers write it (Key, LastModified, ETag, checksum fields,
# Size, ...): the whole page in one pass of the regular expression engine.
_ENTRY = re.compile(
    rb"<Contents><Key>([^<]*)</Key>(?:<LastModified>[^<]*</LastModified>)?"
    rb"<ETag>([^<]*)</ETag>(?:<[A-Za-z]+>[^<]*</[A-Za-z]+>)*?<Size>(\d+)</Size>"
)


def _listed(key: bytes, size: bytes, etag: bytes) -> Listed | None:
    if not key or key.endswith(b"/"):
        return None
    for quote in _QUOTES:
        etag = etag.removeprefix(quote).removesuffix(quote)
    return Listed(_unescaped(key), int(size or 0), _unescaped(etag).strip('"'))


def parse_listing(body: bytes) -> Iterator[Listed]:
    """The objects of one ListObjectsV2 answer: key, size and ETag (unquoted) of each
    `<Contents>`. A page whose every entry is in the usual field order is read in one pass
    (`_ENTRY`); otherwise each entry is searched field by field, in any order. (Three regular
    expressions an entry, and unescaping every ETag's quotes, took 13 ms a thousand objects;
    one pass takes 3, field by field 6 — twice in an incremental backup, holding the
    interpreter lock the event loop needs.)"""
    found = _ENTRY.findall(body)
    if len(found) == body.count(b"<Contents>"):
        for key, etag, size in found:
            listed = _listed(key, size, etag)
            if listed is not None:
                yield listed
        return
    for part in body.split(b"<Contents>")[1:]:
        end = part.find(b"</Contents>")
        entry = part[:end] if end >= 0 else part
        listed = _listed(_field(entry, b"Key"), _field(entry, b"Size"), _field(entry, b"ETag"))
        if listed is not None:
            yield listed


class PrivateListObjectsV2:
    """ListObjectsV2 pages fetched through the minio SDK's private `Minio._url_open`, their
    XML read by `parse_listing` (or `names`).

    The SDK's own `list_objects` parses each entry (a timestamp parse per object), which costs
    about 0.1 ms an object: most of an incremental backup of an unchanged installation.

    What this relies on in the pinned SDK (`tests/backup/test_s3_seam.py` fails when it
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

    def pages(self, bucket: str, prefix: str) -> Iterator[bytes]:
        """Every answer body listing `prefix`, following the continuation tokens."""
        token = ""
        while True:
            body = self.page(bucket, prefix, token)
            yield body
            if not _TRUNCATED.search(body):
                return
            token = _text(_TOKEN, body)
            if not token:
                return

    def __call__(self, bucket: str, prefix: str) -> Iterator[Listed]:
        """Every object under `prefix` (recursively), in key order: key, size, ETag."""
        for body in self.pages(bucket, prefix):
            yield from parse_listing(body)


# The last segment of each key of a listing (only keys are in `<Key>`: nothing is asked with a
# delimiter, so no common prefixes come).
_LAST_SEGMENT = re.compile(rb"<Key>(?:[^<]*/)?([^/<]*)</Key>")


def names(s3: Minio, bucket: str, prefix: str) -> set[str]:
    """The last segment of every key under `prefix`: what a listing answers when only the
    names count (the blobs a bucket holds, by SHA-256), found by one regular expression a page
    (a tenth of what reading each entry's key, size and ETag costs)."""
    found: set[str] = set()
    for body in PrivateListObjectsV2(s3).pages(bucket, prefix):
        for name in _LAST_SEGMENT.findall(body):
            text = name.decode()
            found.add(html.unescape(text) if "&" in text else text)
    found.discard("")
    return found


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


def put_checked(
    s3: Minio,
    bucket: str,
    key: str,
    data: bytes,
    sha256: str,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> None:
    """Store `data`, whose SHA-256 the caller computed of these very bytes, in one PUT (as
    `put`), signed with that digest when the client is a `DigestSigningMinio` (the SDK sends an
    `x-amz-*` entry of the metadata as the header it names)."""
    if isinstance(s3, DigestSigningMinio):
        metadata = {**(metadata or {}), CONTENT_SHA256: sha256}
    s3kit.put_bytes(s3, bucket, key, data, content_type, metadata)


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
