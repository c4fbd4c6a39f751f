"""The backup service keeps its snapshot connection between backups (a new connection cost up
to 40 ms of an unchanged incremental on a busy machine), and one the database dropped while it
was kept is replaced: the next backup still completes."""

import asyncio

from tests.backup.conftest import MakeInstallation, backup

KEPT = "loupe-backup-snapshot"


def test_the_snapshot_connection_is_kept_and_a_dropped_one_replaced(
    make_installation: MakeInstallation,
) -> None:
    inst = make_installation()
    inst.start("images")
    inst.start("catalog")
    inst.start("backup")

    async def kept() -> list[int]:
        conn = await inst.platform.endpoints.pg_connect(inst.database)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
                inst.database,
                KEPT,
            )
            return sorted(r["pid"] for r in rows)
        finally:
            await conn.close()

    async def drop(pids: list[int]) -> None:
        conn = await inst.platform.endpoints.pg_connect(inst.database)
        try:
            for pid in pids:
                assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()

    assert asyncio.run(kept()) == []
    assert backup(inst)["status"] == "completed"
    first = asyncio.run(kept())
    assert len(first) == 1
    assert backup(inst, {"kind": "incremental"})["status"] == "completed"
    assert asyncio.run(kept()) == first  # the same server process: the connection was kept

    asyncio.run(drop(first))
    again = backup(inst, {"kind": "incremental"})
    assert again["status"] == "completed", again.get("error")
    replaced = asyncio.run(kept())
    assert len(replaced) == 1
    assert replaced != first
