"""The backup service keeps its snapshot connection between backups (a new connection cost up
to 40 ms of an unchanged incremental on a busy machine), and one the database dropped while it
was kept is replaced: the next backup still completes."""

from loupe_backup.backups.service import SNAPSHOT_CONNECTION
from tests.backup.conftest import Installation, MakeInstallation, backup


def _kept(inst: Installation) -> list[int]:
    rows = inst.sql(
        "SELECT pid FROM pg_stat_activity "  # noqa: S608 (the test's own names)
        f"WHERE datname = '{inst.database}' AND application_name = '{SNAPSHOT_CONNECTION}'"
    )
    return sorted(r["pid"] for r in rows)


def test_the_snapshot_connection_is_kept_and_a_dropped_one_replaced(
    make_installation: MakeInstallation,
) -> None:
    inst = make_installation()
    inst.start("images")
    inst.start("catalog")
    inst.start("backup")

    assert _kept(inst) == []
    assert backup(inst)["status"] == "completed"
    first = _kept(inst)
    assert len(first) == 1
    assert backup(inst, {"kind": "incremental"})["status"] == "completed"
    assert _kept(inst) == first  # the same server process: the connection was kept

    for pid in first:
        assert inst.sql(f"SELECT pg_terminate_backend({pid}) AS done")[0]["done"]
    again = backup(inst, {"kind": "incremental"})
    assert again["status"] == "completed", again.get("error")
    replaced = _kept(inst)
    assert len(replaced) == 1
    assert replaced != first
