"""NATS connection factory and JetStream stream set-up."""

import nats
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from loupe_shared.contracts.streams import STREAMS, StreamSpec
from loupe_shared.contracts.subjects import stream_name, subject
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.settings import NatsSettings

_log = get_logger("loupe.nats")


def server_urls(url: str) -> list[str]:
    """The servers of a NATS URL setting: one URL or several, comma-separated (the nodes of a
    cluster; the client fails over among them and learns the others from the one it reaches)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(settings: NatsSettings, name: str) -> Client:
    """A client that reconnects forever; lost and regained connections are logged."""

    async def on_error(exc: Exception) -> None:
        _log.warning("nats.error", error=str(exc))

    async def on_disconnect() -> None:
        _log.info("nats.disconnected")

    async def on_reconnect() -> None:
        _log.info("nats.reconnected")

    return await nats.connect(
        servers=server_urls(settings.nats_url),
        name=name,
        user=settings.nats_user or None,
        password=settings.nats_password.get_secret_value() or None,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


def key_subject(bucket: str, key: str) -> str:
    """The subject a write of `key` in the key-value bucket `bucket` is published on (the keys
    are the subjects of the bucket's stream; `>` in `key` matches every key below)."""
    return f"$KV.{bucket}.{key}"


async def bucket_keys(js: JetStreamContext, bucket: str, prefix: str = "") -> list[str]:
    """The keys of a key-value bucket that start with `prefix` (which ends with a dot, or is
    empty), read from the counts the server keeps for its stream's subjects. A deleted or
    purged key is among them (its marker is its last entry); reading it says it is deleted.

    Not nats-py's `KeyValue.keys()`: its watcher asks the server how many entries are still to
    come and ends at once when none is, even when every entry was sent already and is not yet
    handed over — it then answers no key at all. With both cores busy that happened: a backup
    whose manifest held none of the installation's tokens."""
    start = key_subject(bucket, "")
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=key_subject(bucket, prefix + ">"))
    return sorted(s.removeprefix(start) for s in info.state.subjects or {})


async def settled(nc: Client) -> None:
    """Return once the server has processed every command this connection queued so far (a
    SUB before another connection publishes to it, a PUB before another is ordered after it).

    `Client.flush()` alone does not promise that in the pinned nats-py 2.16: it writes its PING
    straight to the socket, ahead of the commands still queued for the client's flusher task,
    so the server can answer PONG before it read a SUB queued just before (under load on two
    cores about one subscription in twelve was not yet there). The first flush's wait lets the
    flusher write the queue; the second flush's PING follows it, and its PONG comes after the
    server processed everything before."""
    await nc.flush()
    await nc.flush()


def stream_config(spec: StreamSpec, namespace: str = "") -> StreamConfig:
    return StreamConfig(
        name=stream_name(spec.name, namespace),
        subjects=[subject(s, namespace) for s in spec.subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE if spec.work_queue else RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_s or None,
        duplicate_window=spec.duplicate_window_s,
        num_replicas=1,
    )


async def ensure_streams(js: JetStreamContext, namespace: str = "", replicas: int = 1) -> None:
    """Create every stream Loupe uses, or update it to the current configuration."""
    for spec in STREAMS:
        config = stream_config(spec, namespace)
        config.num_replicas = replicas
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
            _log.info("nats.stream_created", stream=config.name)
        else:
            await js.update_stream(config)
