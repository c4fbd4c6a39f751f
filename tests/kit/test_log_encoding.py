"""A log line is one JSON object whatever its fields hold: orjson's encoding, the standard
library's for what orjson refuses (so no line is lost to its encoding), secrets redacted."""

import json
import uuid
from datetime import UTC, date, datetime

import pytest

from loupe_shared.kit.logging import configure_logging, get_logger


def _lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_fields_orjson_encodes_and_those_it_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("tests")
    made = uuid.uuid4()
    log = get_logger("tests")
    log.info("plain", id=made, at=datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC), text="é\u2028\x00")
    log.info("wide", n=2**70, day=date(2026, 2, 28), thing=object())
    log.info("keys", mapping={1: "one", "two": 2}, authorization="Bearer x", password="p")
    raw = capsys.readouterr().out
    assert raw.isascii()
    plain, wide, keys = _lines(raw)
    assert plain["id"] == str(made)
    assert plain["at"] == "2026-12-05T01:02:03+00:00"
    assert "\\u2028" in raw  # escaped: no reader splits the line there
    assert plain["text"] == "é\u2028\x00"
    assert wide["n"] == 2**70  # too wide for orjson: the standard library wrote the line
    assert wide["event"] == "wide"
    assert str(wide["thing"]).startswith("<object")
    assert keys["mapping"] == {"1": "one", "two": 2}
    assert keys["authorization"] == keys["password"] == "[redacted]"
    assert keys["service"] == "tests"
    assert keys["level"] == "info"
