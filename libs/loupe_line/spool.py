"""The local spool: messages JetStream has not acknowledged, in a SQLite file, one row per
message, replayed in `seq` order.

Every call blocks on disk (each commit is synced), so the client runs them in a thread. One
process owns a spool at a time; the lock is released by the kernel when that process dies,
however it dies.
"""

import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at TEXT NOT NULL,
    -- results (or inspection requests) the message carries, for the counters
    items INTEGER NOT NULL DEFAULT 1
)
"""


class SpoolBusyError(RuntimeError):
    """Another live process publishes from this spool."""


@dataclass(frozen=True)
class Outgoing:
    batch_id: str
    subject: str
    payload: bytes
    items: int


@dataclass(frozen=True)
class Spooled:
    seq: int
    batch_id: str
    subject: str
    payload: bytes
    items: int


@dataclass(frozen=True)
class SpoolSummary:
    messages: int
    items: int
    payload_bytes: int
    oldest: datetime | None


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(_SCHEMA)
    return db


class Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolBusyError(f"another line client is using the spool {path}") from None
        try:
            self._db = _open(path)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._mutex = threading.Lock()

    def append(self, messages: Sequence[Outgoing]) -> None:
        """Store `messages` in one synced transaction, in the order given."""
        now = datetime.now(UTC).isoformat()
        rows = [(m.batch_id, m.subject, m.payload, now, m.items) for m in messages]
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO spool (batch_id, subject, payload, created_at, items)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def head(self, limit: int) -> list[Spooled]:
        """The oldest `limit` messages, oldest first."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT seq, batch_id, subject, payload, items FROM spool ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Spooled(*row) for row in rows]

    def delete(self, seqs: Sequence[int]) -> None:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in seqs])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def depth(self) -> int:
        with self._mutex:
            (count,) = self._db.execute("SELECT count(*) FROM spool").fetchone()
        return int(count)

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        os.close(self._lock_fd)


def summarize(path: Path) -> SpoolSummary:
    """What a spool holds, read without taking it over (its owner may be running)."""
    if not path.exists():
        return SpoolSummary(messages=0, items=0, payload_bytes=0, oldest=None)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count, items, size, oldest = db.execute(
            "SELECT count(*), coalesce(sum(items), 0), coalesce(sum(length(payload)), 0),"
            " min(created_at) FROM spool"
        ).fetchone()
    except sqlite3.OperationalError:  # a file without the table: nothing spooled yet
        return SpoolSummary(messages=0, items=0, payload_bytes=0, oldest=None)
    finally:
        db.close()
    return SpoolSummary(
        messages=int(count),
        items=int(items),
        payload_bytes=int(size),
        oldest=datetime.fromisoformat(oldest) if oldest else None,
    )
