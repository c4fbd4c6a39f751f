"""Notices of stored results, for readers that wait for new ones (`GET /api/results?wait=`).

Every ingester (in a catalog replica or on its own) publishes `notice.results.stored` on core
NATS after each commit, naming the lines it stored results of; every catalog replica listens
and wakes the readers waiting on those lines (and those waiting on every line), so a reader is
answered within a few milliseconds of the commit whichever process stored the results, and a
reader of a quiet line is not woken by every other line's commits. A notice is sent at most
once (no stream keeps it): a waiting reader also looks again every `recheck_s` (a second by
default, `CATALOG_RESULTS_WAIT_RECHECK_S`), so a lost notice costs it that long at most, never a
result. A notice whose lines cannot be read wakes
every reader.
"""

import asyncio
from collections.abc import Collection
from contextlib import suppress

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter, Gauge

from loupe_shared.contracts import subjects

RECHECK_S = 1.0
# Lines whose notices are told apart; past that (a publisher inventing line ids), everything
# is forgotten and every reader woken once.
MAX_LINES = 10_000


class StoredNotices:
    def __init__(
        self,
        nc: Client,
        namespace: str,
        registry: CollectorRegistry,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.nc = nc
        self.recheck_s = recheck_s
        self.subject = subjects.subject(subjects.NOTICE_RESULTS_STORED, namespace)
        self.waiting = Gauge(
            "results_readers_waiting",
            "Readers of GET /api/results waiting for new results (`wait`)",
            registry=registry,
        )
        self.heard = Counter(
            "results_stored_notices",
            "Notices that results were stored, heard from the ingesters (each wakes the "
            "readers waiting on its lines)",
            registry=registry,
        )
        self.closing = False
        # Bumped by every notice (readers of every line), by a notice naming a line (that
        # line's readers), and by a notice naming none (everyone).
        self._any = 0
        self._all = 0
        self._lines: dict[str, int] = {}
        self._any_changed = asyncio.Event()
        self._line_changed: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        await self.nc.subscribe(self.subject, cb=self._on_notice)

    async def _on_notice(self, msg: Msg) -> None:
        self.heard.inc()
        try:
            lines = orjson.loads(msg.data)["lines"]
            if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
                raise TypeError("lines")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.changed(None)
            return
        self.changed(lines)

    def close(self) -> None:
        """The server is shutting down: every waiting reader is answered now, and none
        waits from here on."""
        self.closing = True
        self.changed(None)

    def changed(self, lines: Collection[str] | None) -> None:
        """Wake the readers of `lines` and of every line (`None`: every reader)."""
        self._any += 1
        woken = [self._any_changed]
        self._any_changed = asyncio.Event()
        if lines is None or len(self._lines) + len(lines) > MAX_LINES:
            self._all += 1
            self._lines.clear()
            woken += self._line_changed.values()
            self._line_changed.clear()
        else:
            for line in lines:
                self._lines[line] = self._lines.get(line, 0) + 1
                event = self._line_changed.pop(line, None)
                if event is not None:
                    woken.append(event)
        for event in woken:
            event.set()

    def generation(self, line_id: str | None) -> tuple[int, int]:
        """What `wait_after` compares: read it before the query."""
        if line_id is None:
            return (self._any, 0)
        return (self._all, self._lines.get(line_id, 0))

    async def wait_after(
        self, line_id: str | None, generation: tuple[int, int], timeout_s: float
    ) -> None:
        """Return once results of `line_id` (None: of any line) were stored after
        `generation` was read (at once when they were already), or after `timeout_s` (at
        most `recheck_s`)."""
        if self.generation(line_id) != generation or timeout_s <= 0 or self.closing:
            return
        if line_id is None:
            event = self._any_changed
        else:
            event = self._line_changed.setdefault(line_id, asyncio.Event())
        with suppress(TimeoutError):
            async with asyncio.timeout(min(timeout_s, self.recheck_s)):
                await event.wait()


async def announce(nc: Client, namespace: str, lines: Collection[str]) -> None:
    """Tell the catalog replicas that results of `lines` were stored (at most once; see
    above)."""
    with suppress(Exception):
        await nc.publish(
            subjects.subject(subjects.NOTICE_RESULTS_STORED, namespace),
            orjson.dumps({"lines": sorted(lines)}),
        )
