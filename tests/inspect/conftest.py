"""An installation of the inspection tests' own: a catalog (own database, own NATS namespace,
ingesting results) and an images service (own bucket), shared by these tests; each test starts
its inspection workers as real processes, in that namespace or in a namespace of its own."""

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from loupe_shared.contracts import subjects
from loupe_shared.contracts.streams import STREAMS, TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.auth import Role, TokenStore
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.bootstrap import bootstrap
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from loupe_stack.stack import Stack
from tests.catalog.conftest import IsolatedCatalog, _drop_bucket
from tests.conftest import TokenMaker, auth
from tests.databases import Databases
from tests.images.conftest import IsolatedStore
from tests.inspect import synthetic


class Workers:
    """Inspection worker processes of one test, in one namespace."""

    def __init__(self, rig: "Rig", namespace: str, log_dir: Path) -> None:
        self.rig = rig
        self.namespace = namespace
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []
        self.ports: list[int] = []

    def start(self, count: int = 1, **env: str) -> list[ManagedProcess]:
        started = []
        for _ in range(count):
            index = len(self.processes)
            port = free_port()
            process = ManagedProcess(
                f"inspect-{index}",
                [sys.executable, "-m", "loupe_inspect"],
                env={
                    **self.rig.platform.service_env("inspect"),
                    "INSPECT_PORT": str(port),
                    "INSPECT_NAMESPACE": self.namespace,
                    "INSPECT_IMAGES_BUCKET": self.rig.bucket,
                    "INSPECT_CATALOG_URL": self.rig.catalog_url,
                    "INSPECT_IMAGES_URL": self.rig.images_url,
                    "INSPECT_CATALOG_TOKEN": self.rig.line_token,
                    "INSPECT_WORKER_ID": f"worker-{index}",
                    "INSPECT_RETRY_DELAY_S": "0.2",
                    **env,
                },
                log_path=self.log_dir / f"inspect-{index}.log",
            )
            process.start()
            self.processes.append(process)
            self.ports.append(port)
            started.append(process)
        for process, port in zip(self.processes[-count:], self.ports[-count:], strict=True):
            wait_until(
                process.name, partial(http_ok, f"http://127.0.0.1:{port}/readyz"), process, 60
            )
        return started

    def token(self, role: Role) -> dict[str, str]:
        """A token the workers (their namespace's token store) accept."""
        return auth(TokenMaker(self.rig.nats(self.namespace))(role))

    def metric(self, name: str, index: int) -> float:
        """The sum of a metric's samples on worker `index`."""
        answer = httpx.get(
            f"http://127.0.0.1:{self.ports[index]}/metrics",
            headers=auth(self.rig.admin_token),
            timeout=5,
        )
        answer.raise_for_status()
        total = 0.0
        for line in answer.text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


async def _create_namespace(settings: NatsSettings, admin_token: str) -> None:
    nc = await connect(settings, "tests")
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings.namespace)
        tokens = TokenStore(js, stream_name(TOKENS_BUCKET, settings.namespace))
        await tokens.ensure_bucket()
        await tokens.create("tests-admin", Role.ADMIN, "tests", token=admin_token)
    finally:
        await nc.drain()


async def _drop_namespace(settings: NatsSettings) -> None:
    nc = await connect(settings, "tests")
    try:
        js = nc.jetstream()
        for spec in STREAMS:
            with suppress(Exception):  # already gone
                await js.delete_stream(stream_name(spec.name, settings.namespace))
        with suppress(Exception):
            await js.delete_key_value(stream_name(TOKENS_BUCKET, settings.namespace))
    finally:
        await nc.drain()


async def _read_stream(settings: NatsSettings, stream: str, subject: str) -> list[Any]:
    nc = await connect(settings, "tests")
    try:
        js = nc.jetstream()
        subscription = await js.pull_subscribe(
            subjects.subject(subject, settings.namespace),
            stream=stream_name(stream, settings.namespace),
        )
        found = []
        while True:
            try:
                batch = await subscription.fetch(200, timeout=0.5)
            except TimeoutError:  # nats-py raises its own subclass or the builtin one
                break
            for message in batch:
                found.append(message)
                await message.ack()
        await subscription.unsubscribe()
        return found
    finally:
        await nc.drain()


async def _publish(settings: NatsSettings, subject: str, bodies: list[tuple[str, bytes]]) -> None:
    nc = await connect(settings, "tests")
    try:
        js = nc.jetstream()
        for msg_id, body in bodies:
            await js.publish(
                subjects.subject(subject, settings.namespace), body, headers={"Nats-Msg-Id": msg_id}
            )
    finally:
        await nc.drain()


class Rig:
    def __init__(self, platform: Stack, store: IsolatedStore, admin_token: str) -> None:
        self.platform = platform
        self.store = store
        self.namespace = store.namespace
        self.bucket = store.bucket
        self.catalog_url = store.catalog.url
        self.images_url = store.url
        self.admin_token = admin_token
        self.line_token = TokenMaker(store.nats)(Role.LINE)
        self.engineer = auth(TokenMaker(store.nats)(Role.ENGINEER))
        self.nats_base = platform.endpoints.nats()

    def nats(self, namespace: str | None = None) -> NatsSettings:
        return self.nats_base.model_copy(
            update={"namespace": self.namespace if namespace is None else namespace}
        )

    def new_namespace(self) -> str:
        namespace = f"w{uuid.uuid4().hex[:8]}"
        asyncio.run(_create_namespace(self.nats(namespace), self.admin_token))
        return namespace

    def drop_namespace(self, namespace: str) -> None:
        asyncio.run(_drop_namespace(self.nats(namespace)))

    def upload(self, data: bytes, kind: str = "capture") -> str:
        answer = httpx.post(
            f"{self.images_url}/api/images",
            params={"kind": kind},
            content=data,
            headers={**self.engineer, "Content-Type": "image/png"},
            timeout=60,
        )
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["sha256"])

    def put_raw_blob(self, data: bytes) -> str:
        """Bytes straight into the images bucket (as if corrupted there): no validation."""
        import hashlib
        import io

        sha = hashlib.sha256(data).hexdigest()
        s3 = self.platform.endpoints.s3()
        s3.put_object(self.bucket, f"blobs/{sha[:2]}/{sha}", io.BytesIO(data), len(data))
        return sha

    def program(self, config: dict[str, Any], master_sha: str) -> tuple[str, int]:
        answer = httpx.post(
            f"{self.catalog_url}/api/programs",
            json={
                "name": f"Inspect {uuid.uuid4().hex[:8]}",
                "config": config,
                "master_image_sha256": master_sha,
            },
            headers=self.engineer,
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        body = answer.json()
        return str(body["id"]), int(body["revision"])

    def request(self, program_id: str, capture_sha: str, **fields: Any) -> dict[str, Any]:
        return {
            "request_id": str(uuid.uuid4()),
            "line_id": "line-7",
            "station": "st-1",
            "program_id": program_id,
            "capture_sha256": capture_sha,
            "part_id": f"part-{uuid.uuid4().hex[:6]}",
            "captured_at": datetime.now(UTC).isoformat(),
            **fields,
        }

    def publish_requests(self, namespace: str, requests: list[dict[str, Any]]) -> None:
        bodies = [
            (str(r.get("request_id", uuid.uuid4())), json.dumps(r).encode()) for r in requests
        ]
        asyncio.run(_publish(self.nats(namespace), subjects.INSPECTION_REQUESTED, bodies))

    def publish_raw(self, namespace: str, body: bytes) -> None:
        asyncio.run(
            _publish(
                self.nats(namespace), subjects.INSPECTION_REQUESTED, [(uuid.uuid4().hex, body)]
            )
        )

    def results(self, namespace: str) -> list[dict[str, Any]]:
        messages = asyncio.run(
            _read_stream(self.nats(namespace), "RESULTS", subjects.RESULTS_RECORDED)
        )
        return [result for m in messages for result in json.loads(m.data)["results"]]

    def dead_letters(self, namespace: str) -> list[tuple[dict[str, str], bytes]]:
        messages = asyncio.run(
            _read_stream(self.nats(namespace), "DEADLETTER", f"{subjects.DEADLETTER}.inspection")
        )
        return [(dict(m.headers or {}), m.data) for m in messages]


@pytest.fixture(scope="session")
def rig(
    platform: Stack,
    databases: Databases,
    admin_token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rig]:
    database = databases.create()
    namespace = f"t{uuid.uuid4().hex[:8]}"
    log_dir = tmp_path_factory.mktemp("inspect-rig")
    settings = platform.setup_settings(namespace)
    asyncio.run(bootstrap(settings, admin_token=admin_token))
    catalog = IsolatedCatalog(platform, database, namespace, log_dir)
    store = IsolatedStore(platform, catalog, admin_token, log_dir)
    try:
        store.start_images()
        store.start_catalog()
        yield Rig(platform, store, admin_token)
    finally:
        store.stop()
        databases.drop(database)
        for bucket in (settings.images_bucket, settings.backup_bucket):
            _drop_bucket(store.s3, bucket)
        asyncio.run(_drop_namespace(store.nats))


@pytest.fixture
def workers(rig: Rig, tmp_path: Path) -> Iterator[Workers]:
    """Workers in a namespace of the test's own (its requests, results, dead letters)."""
    namespace = rig.new_namespace()
    found = Workers(rig, namespace, tmp_path)
    try:
        yield found
    finally:
        found.stop()
        rig.drop_namespace(namespace)


@pytest.fixture(scope="session")
def suite_program(rig: Rig) -> dict[str, Any]:
    """A program on the suite's first part, with a good and a bad capture stored."""
    good = synthetic.make_case(0, bad=False)
    bad = synthetic.make_case(0, bad=True)
    master = rig.upload(synthetic.encode_png(good.master), "master")
    program_id, revision = rig.program(synthetic.program_config(good.roi), master)
    return {
        "program_id": program_id,
        "revision": revision,
        "master": master,
        "good": rig.upload(synthetic.encode_png(good.capture)),
        "bad": rig.upload(synthetic.encode_png(bad.capture)),
        "bad_defects": bad.defects,
    }
