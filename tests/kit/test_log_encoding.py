"""A log line is one JSON object whatever its fields hold: orjson's encoding, the standard
library's for what orjson refuses (so no line is lost to its encoding), ASCII only, secrets
redacted. Logged in a process of its own: `configure_logging` sets the process's loggers."""

import json
import subprocess
import sys
import uuid

_LOGGING = """
import sys, uuid
from datetime import UTC, date, datetime
from loupe_shared.kit.logging import configure_logging, get_logger
configure_logging("tests")
log = get_logger("tests")
at = datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC)
log.info("plain", id=uuid.UUID(sys.argv[1]), at=at, text="ascii")
log.info("unicode", id=uuid.UUID(sys.argv[1]), at=at, text="é\\u2028\\x00")
log.info("wide", n=2**70, day=date(2026, 2, 28), thing=object())
log.info("keys", mapping={1: "one", "two": 2}, authorization="Bearer x", password="p")
"""


def test_fields_orjson_encodes_and_those_it_refuses() -> None:
    made = uuid.uuid4()
    done = subprocess.run(
        [sys.executable, "-c", _LOGGING, str(made)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.isascii()  # U+2028 escaped: no reader splits a line there
    plain, unicode, wide, keys = [json.loads(line) for line in done.stdout.splitlines()]
    for line in (plain, unicode):  # the same fields the same way, whichever encoder wrote it
        assert line["id"] == str(made)
        assert line["at"] == "2026-12-05T01:02:03+00:00"
    assert unicode["text"] == "é\u2028\x00"
    assert wide["n"] == 2**70  # too wide for orjson: the standard library wrote the line
    assert wide["day"] == "2026-02-28"
    assert str(wide["thing"]).startswith("<object")
    assert keys["mapping"] == {"1": "one", "two": 2}
    assert keys["authorization"] == keys["password"] == "[redacted]"
    assert keys["service"] == "tests"
    assert keys["level"] == "info"
