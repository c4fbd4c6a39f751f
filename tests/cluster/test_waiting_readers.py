"""A reader waiting for new results (`GET /api/results?wait=`) on one catalog replica is
answered when an ingester running apart from every API process stores them: the notice goes
over NATS, not through the process that stored them (in the cluster no API process ingests)."""

import threading
import uuid

import httpx

from loupe_stack.stack import Stack
from tests.conftest import auth
from tests.monitoring.scraping import metric
from tests.results.helpers import result
from tests.support import eventually


def test_a_reader_waiting_on_one_replica_is_woken_by_a_separate_ingester(cluster: Stack) -> None:
    token = cluster.admin_token
    reader_url, writer_url = cluster.service_url("catalog", 1), cluster.service_url("catalog", 2)
    line_id = f"wait-{uuid.uuid4().hex[:8]}"
    batch = [result(line_id) for _ in range(3)]
    answers: list[httpx.Response] = []

    def wait_for_them() -> None:
        answers.append(
            httpx.get(
                f"{reader_url}/api/results",
                params={"line_id": line_id, "wait": 30},
                headers=auth(token),
                timeout=60,
            )
        )

    before = metric(reader_url, token, "results_readers_waiting")
    heard = metric(reader_url, token, "results_stored_notices_total")
    reader = threading.Thread(target=wait_for_them, daemon=True)
    reader.start()
    eventually(
        "the reader waits on the first replica",
        lambda: metric(reader_url, token, "results_readers_waiting") > before,
    )
    sent = httpx.post(
        f"{writer_url}/api/results", json={"results": batch}, headers=auth(token), timeout=30
    )
    assert sent.status_code == 202, sent.text
    reader.join(25)
    assert not reader.is_alive(), "the waiting reader was not answered when results were stored"
    assert answers[0].status_code == 200, answers[0].text
    assert sorted(item["result_id"] for item in answers[0].json()["items"]) == sorted(
        r["result_id"] for r in batch
    )
    # The replica heard the separate ingester's notice (what wakes a reader within
    # milliseconds; without it the reader would look again only after a second).
    assert metric(reader_url, token, "results_stored_notices_total") > heard
