"""S3 client factory (the `minio` SDK speaks to MinIO, SeaweedFS or any S3 service).

The SDK is synchronous: call it through `asyncio.to_thread` from async code.
"""

import asyncio

from minio import Minio

from loupe_shared.kit.settings import S3Settings


def client(settings: S3Settings) -> Minio:
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )


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
