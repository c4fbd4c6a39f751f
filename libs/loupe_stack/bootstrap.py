"""One-shot set-up of an installation: streams, the token and lease buckets, object buckets
and the first admin token. Safe to run any number of times (compose runs it on every `up`)."""

import asyncio
import io
import time

from minio import Minio
from nats.js.client import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from pydantic_settings import SettingsConfigDict

from loupe_shared.contracts.streams import (
    IDEMPOTENCY_BUCKET,
    LEASES_BUCKET,
    MAINTENANCE_BUCKET,
    STREAMS,
    TOKENS_BUCKET,
)
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit import idempotency, lease, maintenance
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
    # How long set-up waits for every stream and bucket of a cluster to elect its leader.
    leader_timeout_s: float = 60.0
    # When set (compose, CI), this token is registered as the first admin token.
    admin_token: str = ""


def _kv_prefix(namespace: str) -> str:
    """The start of the streams behind every key-value bucket of the namespace."""
    return "KV_" + stream_name("LOUPE_", namespace)


async def _replicate_buckets(js: JetStreamContext, namespace: str, replicas: int) -> None:
    """Every key-value bucket of the namespace (tokens, maintenance, idempotency, leases) at
    the streams' replica count, so that losing one NATS node of a cluster loses none."""
    prefix = _kv_prefix(namespace)
    for info in await js.streams_info():
        config = info.config
        if not (config.name or "").startswith(prefix) or config.num_replicas == replicas:
            continue
        config.num_replicas = replicas
        await js.update_stream(config)
        _log.info("setup.bucket_replicated", bucket=config.name, replicas=replicas)


async def _await_leaders(
    js: JetStreamContext, namespace: str, replicas: int, timeout_s: float
) -> None:
    """Until every stream and bucket of the namespace has a leader and its other replicas
    are current (at once on a single server): writes right after set-up then go through."""
    if replicas <= 1:
        return
    names = {stream_name(spec.name, namespace) for spec in STREAMS}
    prefix = _kv_prefix(namespace)
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = []
        for info in await js.streams_info():
            name = info.config.name or ""
            if name not in names and not name.startswith(prefix):
                continue
            cluster = info.cluster
            peers = cluster.replicas or [] if cluster else []
            if not (cluster and cluster.leader and len(peers) == replicas - 1) or not all(
                peer.current for peer in peers
            ):
                waiting.append(name)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("no leader or replicas not current for: " + ", ".join(waiting))
        await asyncio.sleep(0.2)


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
        replicas = settings.stream_replicas
        await store.ensure_bucket(replicas)
        await lease.ensure_bucket(js, stream_name(LEASES_BUCKET, settings.namespace), replicas)
        await maintenance.open_bucket(
            js, stream_name(MAINTENANCE_BUCKET, settings.namespace), replicas
        )
        await idempotency.open_bucket(
            js, stream_name(IDEMPOTENCY_BUCKET, settings.namespace), replicas
        )
        await _replicate_buckets(js, settings.namespace, replicas)
        await _await_leaders(js, settings.namespace, replicas, settings.leader_timeout_s)
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
