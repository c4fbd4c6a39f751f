"""One-shot set-up of an installation: streams, the token and lease buckets, object buckets
and the first admin token. Safe to run any number of times (compose runs it on every `up`)."""

import asyncio
import io

from minio import Minio
from nats.js.errors import KeyWrongLastSequenceError
from pydantic_settings import SettingsConfigDict

from loupe_shared.contracts.streams import LEASES_BUCKET, TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit import lease
from loupe_shared.kit import s3 as s3_kit
from loupe_shared.kit.auth import Role, TokenStore
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings, S3Settings

_log = get_logger("loupe.setup")


class SetupSettings(NatsSettings, S3Settings):
    model_config = SettingsConfigDict(env_prefix="LOUPE_", extra="ignore")

    images_bucket: str = "loupe-images"
    backup_bucket: str = "loupe-backups"
    stream_replicas: int = 1
    # When set (compose, CI), this token is registered as the first admin token.
    admin_token: str = ""


def _probe_write(client: Minio, bucket: str) -> None:
    key = ".loupe-setup-probe"
    client.put_object(bucket, key, io.BytesIO(b"ok"), 2)
    client.remove_object(bucket, key)


async def bootstrap(settings: SetupSettings, admin_token: str | None = None) -> None:
    nc = await connect(settings, "loupe-setup")
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings.namespace, replicas=settings.stream_replicas)
        store = TokenStore(js, stream_name(TOKENS_BUCKET, settings.namespace))
        await store.ensure_bucket()
        await lease.ensure_bucket(
            js, stream_name(LEASES_BUCKET, settings.namespace), replicas=settings.stream_replicas
        )
        token = admin_token or settings.admin_token
        if token:
            token_id = token.split("_")[1]
            if await store.get(token_id) is None:
                try:
                    await store.create("local-admin", Role.ADMIN, "setup", token=token)
                    _log.info("setup.admin_token_registered", token_id=token_id)
                except KeyWrongLastSequenceError:
                    pass  # registered concurrently by another set-up run
    finally:
        await nc.drain()
    client = s3_kit.client(settings)
    for bucket in (settings.images_bucket, settings.backup_bucket):
        # A fresh S3 server can answer 5xx for a moment after it starts listening.
        for attempt in range(120):
            try:
                if await s3_kit.ensure_bucket(client, bucket):
                    _log.info("setup.bucket_created", bucket=bucket)
                # A new bucket may refuse writes until its storage is allocated: set-up is
                # done when a write goes through.
                await asyncio.to_thread(_probe_write, client, bucket)
                break
            except Exception:
                if attempt == 119:
                    raise
                await asyncio.sleep(0.25)
