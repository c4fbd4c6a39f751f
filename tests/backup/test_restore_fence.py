"""A fenced restore: clients write continuously through a restore. Every write answered 2xx
is found in the restore point's data or (answered after the restore ended) in the restored
installation; every other one was refused (503 with Retry-After); none is lost. During the
restore a write without a valid token gets 401, not the maintenance answer."""

import csv
import io
import threading
import uuid
from collections import Counter

import httpx

from loupe_shared.kit.auth import Role
from tests.backup.conftest import (
    Installation,
    MakeInstallation,
    backup,
    finished_restore,
    png,
    restore_state,
    start_restore,
    upload,
)
from tests.catalog.helpers import new_program
from tests.support import eventually


class Writer:
    """POST /api/programs in a loop, each with a unique name; records every answer."""

    def __init__(self, inst: Installation, master: str, token: dict[str, str]) -> None:
        self.inst, self.master, self.token = inst, master, token
        self.answers: list[tuple[str, int, str | None]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        with httpx.Client(base_url=self.inst.url("catalog"), timeout=30) as client:
            while not self.stop.is_set():
                name = f"fence-{uuid.uuid4().hex[:12]}"
                answer = client.post(
                    "/api/programs",
                    json=new_program(name=name, master_image_sha256=self.master),
                    headers=self.token,
                )
                with self.lock:
                    self.answers.append(
                        (name, answer.status_code, answer.headers.get("retry-after"))
                    )
                if answer.status_code == 503:
                    self.stop.wait(0.02)  # pacing while refused, not a readiness wait

    def count(self, status: int) -> int:
        with self.lock:
            return sum(1 for _, s, _ in self.answers if s == status)


def _programs_in_set(inst: Installation, backup_id: str) -> set[str]:
    response = inst.s3.get_object(inst.backup_bucket, f"sets/{backup_id}/data/programs.csv")
    try:
        text = response.read().decode()
    finally:
        response.close()
        response.release_conn()
    return {row["name"] for row in csv.DictReader(io.StringIO(text))}


def test_writes_through_a_restore_are_kept_or_refused(
    make_installation: MakeInstallation,
) -> None:
    inst = make_installation()
    inst.start("images")
    inst.start("catalog")
    inst.start("backup", restore_hold_before_commit_s="1")
    engineer = inst.token(Role.ENGINEER)
    master = upload(inst, png(901), engineer)
    before = backup(inst)
    assert before["status"] == "completed"

    writers = [Writer(inst, master, engineer) for _ in range(2)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in writers]
    for thread in threads:
        thread.start()
    try:
        eventually("writes answered", lambda: sum(w.count(201) for w in writers) >= 5)
        started = start_restore(inst, before["id"])
        assert started.status_code == 202, started.text
        restore_id = started.json()["id"]
        eventually(
            "restore holding its transaction",
            lambda: restore_state(inst, before["id"], restore_id)["phase"] == "holding",
            timeout_s=60,
        )
        # Authentication before the maintenance answer.
        with inst.client("catalog") as catalog:
            anonymous = catalog.post("/api/programs", json=new_program())
            assert anonymous.status_code == 401, anonymous.text
            assert "maintenance" not in anonymous.json()
            forged = catalog.post(
                "/api/programs",
                json=new_program(),
                headers={"Authorization": f"Bearer loupe_{'0' * 16}_{'x' * 40}"},
            )
            assert forged.status_code == 401
        state = finished_restore(inst, before["id"], restore_id)
        assert state["status"] == "completed", state
        ended = sum(w.count(201) for w in writers)
        eventually("writes accepted again", lambda: sum(w.count(201) for w in writers) >= ended + 3)
    finally:
        for w in writers:
            w.stop.set()
        for thread in threads:
            thread.join(30)

    answers = [a for w in writers for a in w.answers]
    statuses = Counter(status for _, status, _ in answers)
    kept = {name for name, status, _ in answers if 200 <= status < 300}
    refused = [a for a in answers if a[1] in (503, 409)]
    assert set(statuses) <= {201, 503, 409}, statuses
    assert all(retry is not None for _, status, retry in refused if status == 503)

    point = state["restore_point_id"]
    assert point is not None
    in_point = _programs_in_set(inst, point)
    restored = {r["name"] for r in inst.sql("SELECT name FROM programs")}
    lost = kept - in_point - restored
    # Answered before the fence: in the restore point; after the restore: in the installation.
    first_refused = next(i for i, a in enumerate(writers[0].answers) if a[1] == 503)
    early = {name for name, status, _ in writers[0].answers[:first_refused] if status == 201}
    print(
        f"\nfenced restore: {len(kept)} writes answered 2xx, {len(kept & in_point)} found in the "
        f"restore point, {len(kept & restored)} answered after the restore (in the restored "
        f"data), {len(refused)} refused, {len(lost)} lost"
    )
    assert not lost, sorted(lost)
    assert early <= in_point
    assert len(refused) > 0
    assert not (kept & in_point & restored)  # the restored set held none of the writes
    assert sorted(state["details"]["fenced_instances"])  # catalog and images acknowledged
    services = {i.split(".")[0] for i in state["details"]["fenced_instances"]}
    assert {"catalog", "images"} <= services
