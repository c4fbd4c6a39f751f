"""Two images replicas on one store: one scrubs at a time, and when it is killed mid-pass the
other resumes the pass once the lease expired."""

import asyncio
import socket
import sys
from typing import Any

import httpx
import orjson
import pytest
from nats.js.errors import NoKeysError
from prometheus_client.parser import text_string_to_metric_families

from loupe_images.images.scrub import LEASE
from loupe_shared.contracts.streams import LEASES_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.auth import Role
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from tests.images.conftest import IsolatedStore
from tests.images.helpers import upload
from tests.support import eventually

LEASE_TTL_S = 2.0
# A dead holder's lease expires after its TTL; the other replica looks every third of it.
TAKEOVER_BOUND_S = 3 * LEASE_TTL_S + 10


def lease_record(nats: NatsSettings, namespace: str, name: str) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        nc = await connect(nats, "tests")
        try:
            kv = await nc.jetstream().key_value(stream_name(LEASES_BUCKET, namespace))
            try:
                entry = await kv.get(name)
            except Exception:
                return None
            found: dict[str, Any] = orjson.loads(entry.value or b"null")
            return found
        finally:
            await nc.drain()

    return asyncio.run(read())


def lease_writes(nats: NatsSettings, namespace: str, name: str) -> int:
    """How many times the lease `name` was written (taken, renewed, released) in the bucket's
    kept history: 0 when it never was."""

    async def read() -> int:
        nc = await connect(nats, "tests")
        try:
            kv = await nc.jetstream().key_value(stream_name(LEASES_BUCKET, namespace))
            try:
                return len(await kv.history(name))
            except NoKeysError:
                return 0
        finally:
            await nc.drain()

    return asyncio.run(read())


def leases_held(client: httpx.Client, headers: dict[str, str], name: str) -> float:
    """This replica's `leases_held` for `name` (0 when it never held it)."""
    text = client.get("/metrics", headers=headers).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "leases_held"
        for sample in family.samples
        if sample.labels.get("name") == name
    )


def start_replica(store: IsolatedStore, port: int, tag: str, **env: str) -> ManagedProcess:
    process = ManagedProcess(
        f"images-{tag}",
        [sys.executable, "-m", "loupe_images"],
        env={**store.env, "IMAGES_PORT": str(port), **env},
        log_path=store.log_dir / f"images-{tag}.log",
    )
    process.start()
    store.processes.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_until(f"images {tag}", lambda: http_ok(f"{url}/healthz"), process, 60)
    return process


@pytest.mark.slow
def test_one_replica_scrubs_and_the_other_resumes_when_it_is_killed(
    isolated_store: IsolatedStore,
) -> None:
    store = isolated_store
    store.start_catalog()
    env = {
        "IMAGES_LEASE_TTL_S": str(LEASE_TTL_S),
        # The loop that resumes unfinished passes runs; no pass is due by itself.
        "IMAGES_SCRUB_INTERVAL_S": "86400",
        # Slow passes: a pause after every object.
        "IMAGES_SCRUB_BATCH_S": "0.001",
        "IMAGES_SCRUB_PAUSE_S": "0.6",
    }
    ports = {"a": store.port, "b": free_port()}
    replicas = {tag: start_replica(store, port, tag, **env) for tag, port in ports.items()}
    clients = {tag: store.client(f"http://127.0.0.1:{port}") for tag, port in ports.items()}
    operator = store.token(Role.OPERATOR)
    engineer = store.token(Role.ENGINEER)
    try:
        for seed in range(10):
            upload(clients["a"], engineer, seed)

        def report(tag: str) -> dict[str, Any]:
            scrub: dict[str, Any] = (
                clients[tag].get("/api/integrity/report", headers=operator).json()["scrub"]
            )
            return scrub

        # Each replica looked whether a pass is due as it started, and none was: looking does
        # not take the lease (a replica holding it only to look refused a pass asked for on the
        # other meanwhile).
        assert lease_writes(store.nats, store.namespace, LEASE) == 0

        started = clients["a"].post("/api/integrity/scrub", headers=operator)
        assert started.status_code == 202
        assert started.json()["started"] is True
        # The other replica does not start a second pass while the first runs.
        again = clients["b"].post("/api/integrity/scrub", headers=operator)
        assert again.json()["started"] is False

        holder = lease_record(store.nats, store.namespace, LEASE)
        assert holder is not None
        assert holder["instance"] == f"{socket.gethostname()}:{replicas['a'].pid}"
        assert leases_held(clients["a"], store.admin, LEASE) == 1
        assert leases_held(clients["b"], store.admin, LEASE) == 0
        first = report("a")
        assert first["state"] == "running"
        assert first["running_here"] is True
        assert report("b")["running_here"] is False
        pass_id = first["pass_id"]

        killed = replicas["a"]
        assert killed.popen is not None
        killed.popen.kill()
        killed.popen.wait(10)

        took = eventually(
            "the other replica resumes the pass",
            lambda: report("b")["running_here"] is True,
            timeout_s=TAKEOVER_BOUND_S,
        )
        print(f"scrub taken over {took:.1f} s after the holder was killed")
        holder = lease_record(store.nats, store.namespace, LEASE)
        assert holder is not None
        assert holder["instance"] == f"{socket.gethostname()}:{replicas['b'].pid}"
        assert leases_held(clients["b"], store.admin, LEASE) == 1

        eventually("the resumed pass ends", lambda: report("b")["state"] == "done", 120)
        done = report("b")
        # The same pass, finished from where it was left, not a new one.
        assert done["last_complete"]["pass_id"] == pass_id
        assert done["last_complete"]["objects"] >= 10
        # Given up at the end of the pass: nobody holds it.
        eventually(
            "the lease released",
            lambda: lease_record(store.nats, store.namespace, LEASE) is None,
            timeout_s=10,
        )
    finally:
        for client in clients.values():
            client.close()
