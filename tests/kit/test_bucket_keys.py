"""`kit.nats.bucket_keys`: the keys of a key-value bucket, from the server's own counts of its
stream's subjects. nats-py's `KeyValue.keys()` answered no key at all now and then with both
cores busy (its watcher ended on "nothing left to send" before the entries already sent were
handed over): a backup's manifest then held none of the installation's tokens, and the restore
fence would have found no live instance to wait for."""

import uuid
from datetime import UTC, datetime

import pytest
from nats.js.errors import KeyNotFoundError

from loupe_shared.kit.auth import Role, TokenStore
from loupe_shared.kit.nats import bucket_keys, connect
from loupe_shared.kit.settings import NatsSettings

ROUNDS = 100


async def test_the_keys_of_a_bucket_by_prefix_deleted_ones_among_them(
    nats_settings: NatsSettings,
) -> None:
    nc = await connect(nats_settings, "tests-bucket-keys")
    js = nc.jetstream()
    bucket = f"tests-keys-{uuid.uuid4().hex[:8]}"
    kv = await js.create_key_value(bucket=bucket, history=1)
    try:
        assert await bucket_keys(js, bucket) == []
        for key in ("live.b", "live.a", "ack.a", "other"):
            await kv.put(key, b"1")
        assert await bucket_keys(js, bucket) == ["ack.a", "live.a", "live.b", "other"]
        assert await bucket_keys(js, bucket, "live.") == ["live.a", "live.b"]
        assert await bucket_keys(js, bucket, "none.") == []
        await kv.delete("live.b")
        assert await bucket_keys(js, bucket, "live.") == ["live.a", "live.b"]
        with pytest.raises(KeyNotFoundError):
            await kv.get("live.b")
        await kv.purge("live.b")  # its marker stays: still a key, still read as deleted
        assert await bucket_keys(js, bucket, "live.") == ["live.a", "live.b"]
        with pytest.raises(KeyNotFoundError):
            await kv.get("live.b")
    finally:
        await js.delete_key_value(bucket)
        await nc.close()


async def test_every_token_is_listed_every_time(nats_settings: NatsSettings) -> None:
    nc = await connect(nats_settings, "tests-token-list")
    js = nc.jetstream()
    bucket = f"tests-tokens-{uuid.uuid4().hex[:8]}"
    store = TokenStore(js, bucket)
    await store.ensure_bucket()
    try:
        made = [
            (await store.create(f"t{n}", Role.LINE, "tests", expires_at=None))[0].id
            for n in range(5)
        ]
        await store.revoke(made[0])  # still listed, as revoked
        counts = [len(await store.list()) for _ in range(ROUNDS)]
        assert counts == [5] * ROUNDS
        listed = await store.list()
        assert {r.id for r in listed} == set(made)
        assert [r.revoked_at is not None for r in listed].count(True) == 1
        assert all(r.created_at <= datetime.now(UTC) for r in listed)
    finally:
        await js.delete_key_value(bucket)
        await nc.close()
