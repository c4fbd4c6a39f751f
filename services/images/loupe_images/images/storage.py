"""Where image bytes live: content-addressed keys in the images bucket, metadata beside them
as object metadata. The SDK is synchronous; these run in worker threads."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, BinaryIO, cast

from minio import Minio
from minio.error import S3Error
from pydantic import ConfigDict

from loupe_images.images.schemas import ImageMetadata
from loupe_shared.contracts import images as layout
from loupe_shared.kit import s3 as s3kit

# The bucket's key layout is a contract: inspection workers and backup read it too.
blob_key = layout.image_blob_key
thumbnail_key = layout.thumbnail_key
status_key = layout.status_key
get_bytes = s3kit.get_bytes
put_bytes = s3kit.put_bytes
hash_object = s3kit.hash_object


class StoredImage(ImageMetadata):
    """An image as stored: what the API answers about it, and the id of this storing."""

    model_config = ConfigDict(frozen=True)

    # Differs between two storings of the same bytes (after a deletion), so their
    # announcements are not taken for duplicates.
    upload_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """What the API answers about the image (without the upload id)."""
        return self.model_dump(exclude={"upload_id"})


_MISSING = s3kit.MISSING
_MIN_PART = 5 * 1024 * 1024


def stat(s3: Minio, bucket: str, sha256: str) -> StoredImage | None:
    try:
        info = s3.stat_object(bucket, blob_key(sha256))
    except S3Error as exc:
        if exc.code in _MISSING:
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
        upload_id=meta.get("upload-id", ""),
    )


def put(s3: Minio, bucket: str, image: StoredImage, body: IO[bytes]) -> None:
    body.seek(0)
    s3.put_object(
        bucket,
        blob_key(image.sha256),
        cast(BinaryIO, body),
        image.size,
        # One PUT for the whole image: an interrupted upload leaves no partial multipart
        # upload behind.
        part_size=max(image.size, _MIN_PART),
        content_type=image.content_type,
        metadata={
            "width": str(image.width),
            "height": str(image.height),
            "kind": image.kind,
            "filename": image.filename,
            "line-id": image.line_id,
            "tags": ",".join(image.tags),
            "sha256": image.sha256,
            "upload-id": image.upload_id,
        },
    )


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    last_modified: datetime | None


def listing(
    s3: Minio, bucket: str, prefix: str, start_after: str | None = None
) -> Iterator[Listed]:
    """Every object under `prefix` (recursively), in key order."""
    for found in s3.list_objects(bucket, prefix=prefix, recursive=True, start_after=start_after):
        if found.object_name is not None and not found.is_dir:
            yield Listed(found.object_name, int(found.size or 0), found.last_modified)


def move(s3: Minio, bucket: str, key: str, to_key: str) -> bool:
    """Copy `key` to `to_key`, then remove `key`; answers False when `key` is missing."""
    data = get_bytes(s3, bucket, key)
    if data is None:
        return False
    put_bytes(s3, bucket, to_key, data, "application/octet-stream")
    s3kit.remove(s3, bucket, key)
    return True
