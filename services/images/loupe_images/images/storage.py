"""Where image bytes live: content-addressed keys in the images bucket, metadata beside them
as object metadata. The SDK is synchronous; these run in worker threads."""

import io
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

from minio import Minio
from minio.error import S3Error


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    size: int
    width: int
    height: int
    content_type: str
    kind: str
    filename: str
    line_id: str
    tags: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "content_type": self.content_type,
            "kind": self.kind,
            "filename": self.filename,
            "line_id": self.line_id,
            "tags": self.tags,
        }


def thumbnail_key(sha256: str, size: int) -> str:
    return f"thumbnails/{sha256[:2]}/{sha256}/{size}.webp"


def status_key(sha256: str) -> str:
    return f"status/{sha256[:2]}/{sha256}.json"


def put_bytes(s3: Minio, bucket: str, key: str, data: bytes, content_type: str) -> None:
    s3.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)


def get_bytes(s3: Minio, bucket: str, key: str) -> bytes | None:
    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NotFound", "NoSuchObject"):
            return None
        raise
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


def stat(s3: Minio, bucket: str, sha256: str) -> StoredImage | None:
    try:
        info = s3.stat_object(bucket, blob_key(sha256))
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NotFound", "NoSuchObject"):
            return None
        raise
    meta = {k.lower().removeprefix("x-amz-meta-"): v for k, v in (info.metadata or {}).items()}
    return StoredImage(
        sha256=sha256,
        size=int(info.size or 0),
        width=int(meta.get("width", 0)),
        height=int(meta.get("height", 0)),
        content_type=info.content_type or "application/octet-stream",
        kind=meta.get("kind", "master"),
        filename=meta.get("filename", ""),
        line_id=meta.get("line-id", ""),
        tags=[t for t in meta.get("tags", "").split(",") if t],
    )


def put(s3: Minio, bucket: str, image: StoredImage, body: IO[bytes]) -> None:
    body.seek(0)
    s3.put_object(
        bucket,
        blob_key(image.sha256),
        cast(BinaryIO, body),
        image.size,
        content_type=image.content_type,
        metadata={
            "width": str(image.width),
            "height": str(image.height),
            "kind": image.kind,
            "filename": image.filename,
            "line-id": image.line_id,
            "tags": ",".join(image.tags),
            "sha256": image.sha256,
        },
    )
