"""Scratch buckets for the benchmarks, made ready before anything is measured."""

import io
import time

from minio import Minio


def first_write(s3: Minio, bucket: str, timeout_s: float = 30.0) -> None:
    """SeaweedFS grows a bucket's volumes on its first write (about a second); done here, with
    retries, so neither that nor a transient error during it lands in a measured round."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            s3.put_object(bucket, "bench/first-write", io.BytesIO(b"ready"), 5)
            s3.remove_object(bucket, "bench/first-write")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
