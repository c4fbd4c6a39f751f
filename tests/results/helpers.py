"""Helpers the results tests share: a result to publish, the listing, and a live-feed reader."""

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson


def result(line_id: str, verdict: str = "pass", **extra: Any) -> dict[str, Any]:
    return {
        "result_id": str(uuid.uuid4()),
        "line_id": line_id,
        "station": "s1",
        "part_id": f"part-{uuid.uuid4().hex[:6]}",
        "verdict": verdict,
        "score": 0.97,
        "defects": []
        if verdict == "pass"
        else [{"kind": "scratch", "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "area": 12}],
        "processing_ms": 12.5,
        "captured_at": datetime.now(UTC).isoformat(),
        **extra,
    }


def listed(gateway: httpx.Client, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = gateway.get("/api/results", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


class LiveReader:
    """Reads `GET /api/results/stream` in a thread of its own until `count` results came.

    `with LiveReader(...) as reader:` returns once the feed said it is connected, so what is
    published inside the block is on the feed; `reader.received` holds the results' bodies
    once `reader.join()` returned."""

    def __init__(
        self, gateway_url: str, headers: dict[str, str], params: dict[str, str], count: int
    ) -> None:
        self.gateway_url = gateway_url
        self.headers = headers
        self.params = params
        self.count = count
        self.received: list[dict[str, Any]] = []
        self.content_type = ""
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        with (
            httpx.Client(base_url=self.gateway_url, timeout=30) as client,
            client.stream(
                "GET", "/api/results/stream", params=self.params, headers=self.headers
            ) as stream,
        ):
            self.content_type = stream.headers["content-type"]
            event = ""
            for text in stream.iter_lines():
                if text == ": connected":
                    self.connected.set()
                if text.startswith("event: "):
                    event = text.removeprefix("event: ")
                if text.startswith("data: ") and event == "result":
                    self.received.append(orjson.loads(text.removeprefix("data: ")))
                    if len(self.received) == self.count:
                        return

    def __enter__(self) -> "LiveReader":
        self._thread.start()
        assert self.connected.wait(15), "the live feed never said it was connected"
        return self

    def __exit__(self, *_: object) -> None:
        self.join()

    @property
    def ended(self) -> bool:
        """Whether the reading is over (the count reached or the stream ended)."""
        return not self._thread.is_alive()

    def join(self, timeout_s: float = 15) -> list[dict[str, Any]]:
        self._thread.join(timeout_s)
        return self.received
