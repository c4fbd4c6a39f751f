"""Readers waiting for new results on a catalog process of the test's own: woken by the
ingest's notice (the process's own recheck set far beyond the test's time), and answered at
once when the process is told to stop (SIGTERM: a rolling update, a scale-down), which also
ends its live feeds instead of holding its shutdown for the grace it gives requests under
way; the readers go on elsewhere."""

import signal
import threading
import uuid

import httpx

from tests.catalog.conftest import IsolatedCatalog
from tests.conftest import auth
from tests.monitoring.scraping import metric
from tests.results.helpers import LiveReader, result
from tests.support import eventually

# Far longer than the test waits for the process to end: a shutdown that waited for the
# readers would fail it.
GRACE_S = "120"


def _waiting(url: str, token: str) -> float:
    return metric(url, token, "results_readers_waiting")


def test_a_stopping_catalog_answers_its_waiting_readers_and_ends_its_live_feeds(
    isolated_catalog: IsolatedCatalog, admin_token: str
) -> None:
    admin = auth(admin_token)
    process = isolated_catalog.start(CATALOG_SHUTDOWN_TIMEOUT_S=GRACE_S)
    assert process.popen is not None
    answers: list[httpx.Response] = []

    def wait_for_results() -> None:
        answers.append(
            httpx.get(
                f"{isolated_catalog.url}/api/results",
                params={"line_id": f"wait-{uuid.uuid4().hex[:8]}", "wait": 30},
                headers=admin,
                timeout=60,
            )
        )

    try:
        waiting = threading.Thread(target=wait_for_results, daemon=True)
        waiting.start()
        with LiveReader(isolated_catalog.url, admin, {}, count=1) as feed:
            eventually("the reader waits", lambda: _waiting(isolated_catalog.url, admin_token) >= 1)
            process.popen.send_signal(signal.SIGTERM)
            # uvicorn drains, runs the app's shutdown, then raises SIGTERM again.
            assert process.popen.wait(30) == -signal.SIGTERM
            # The feed ended with its stream (no result came): the reader's thread is done.
            feed.join()
            assert feed.ended, "the live feed was not ended"
        waiting.join(5)
        assert not waiting.is_alive()
        assert answers[0].status_code == 200, answers[0].text
        assert answers[0].json() == {"items": [], "next_cursor": None}
        assert feed.received == []
        assert (
            "Application shutdown complete"
            in (isolated_catalog.log_dir / "catalog.log").read_text()
        )
    finally:
        if process.running():
            process.stop()


def test_a_waiting_reader_is_answered_by_the_ingests_notice(
    isolated_catalog: IsolatedCatalog, admin_token: str
) -> None:
    admin = auth(admin_token)
    # No recheck within the test: only the notice can answer the reader before its wait ends.
    process = isolated_catalog.start(CATALOG_RESULTS_WAIT_RECHECK_S="60")
    line_id = f"wait-{uuid.uuid4().hex[:8]}"
    batch = [result(line_id) for _ in range(2)]
    answers: list[httpx.Response] = []

    def wait_for_results() -> None:
        answers.append(
            httpx.get(
                f"{isolated_catalog.url}/api/results",
                params={"line_id": line_id, "wait": 30},
                headers=admin,
                timeout=60,
            )
        )

    try:
        waiting = threading.Thread(target=wait_for_results, daemon=True)
        waiting.start()
        eventually("the reader waits", lambda: _waiting(isolated_catalog.url, admin_token) >= 1)
        sent = httpx.post(
            f"{isolated_catalog.url}/api/results",
            json={"results": batch},
            headers=admin,
            timeout=30,
        )
        assert sent.status_code == 202, sent.text
        waiting.join(20)
        assert not waiting.is_alive(), "the reader was not woken by the notice"
        assert answers[0].status_code == 200, answers[0].text
        assert sorted(item["result_id"] for item in answers[0].json()["items"]) == sorted(
            r["result_id"] for r in batch
        )
        eventually("the reader left", lambda: _waiting(isolated_catalog.url, admin_token) == 0)
    finally:
        process.stop()
