"""`loupe`: run the embedded platform, set up an installation, manage API tokens, migrate
legacy programs."""

import argparse
import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict
from rich.console import Console
from rich.table import Table

from loupe_shared.contracts.streams import TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.auth import Role, TokenRecord, TokenStore
from loupe_shared.kit.logging import configure_logging
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from loupe_stack import legacy
from loupe_stack.bootstrap import SetupSettings, bootstrap
from loupe_stack.config import StackSettings
from loupe_stack.credentials import load_or_create
from loupe_stack.processes import StackError

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def cmd_run(args: argparse.Namespace) -> int:
    from loupe_stack.stack import Stack

    settings = StackSettings()
    if args.cluster:
        settings = settings.model_copy(update={"cluster": True})
    stack = Stack(settings, report=lambda line: console.print(f"[dim]·[/dim] {line}"))
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        stack.start()
    except StackError as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        return 2
    except _Stop:
        err.print("stopped before the platform was ready")
        return 130
    built = (settings.console_dir / "index.html").is_file()
    unbuilt = "" if built else "  (not built: python -m loupe_stack.console builds it)"
    console.print(
        "\n[bold green]Loupe is ready.[/bold green]\n"
        + (
            "  mode         cluster: 3 NATS nodes, 2 processes of each service, 2 ingesters\n"
            if settings.cluster
            else ""
        )
        + f"  gateway      {stack.gateway_url}\n"
        f"  console      {stack.console_url}{unbuilt}\n"
        f"  API docs     {stack.gateway_url}/docs\n"
        f"  admin token  {stack.admin_token}\n"
        f"  data folder  {stack.data_dir}\n"
        f"  logs         {stack.log_dir}\n\n"
        f'  try: curl -H "Authorization: Bearer $TOKEN" {stack.gateway_url}/api/schema\n'
        "Press Ctrl-C to stop.",
        soft_wrap=True,
    )
    code = 0
    try:
        while True:
            exited = stack.first_exited()
            if exited is not None and stack.replaceable(exited):
                # Cluster mode: the others carry on; the exited process is started again,
                # as an orchestrator would.
                err.print(
                    f"warning: {exited.name} exited (code {exited.exit_code()}); starting it again",
                    soft_wrap=True,
                )
                stack.revive(exited)
                continue
            if exited is not None:
                err.print(
                    f"error: {exited.name} exited unexpectedly (code {exited.exit_code()}); "
                    f"stopping. Its log ({exited.log_path}) ends with:\n{exited.log_tail()}",
                    soft_wrap=True,
                )
                code = 1
                break
            time.sleep(0.5)
    except _Stop as signame:
        console.print(f"\n{signame}: stopping Loupe")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    console.print("stopped; data kept in " + str(stack.data_dir))
    return code


def cmd_setup(_: argparse.Namespace) -> int:
    asyncio.run(bootstrap(SetupSettings()))
    console.print("streams, token bucket and object buckets are in place")
    return 0


class CliNatsSettings(NatsSettings):
    model_config = SettingsConfigDict(env_prefix="LOUPE_", extra="ignore")


def _cli_nats_settings() -> CliNatsSettings:
    """The `LOUPE_NATS_*` settings; without them, the local installation in the data folder."""
    if "LOUPE_NATS_URL" in os.environ:
        return CliNatsSettings()
    stack = StackSettings()
    if not (stack.data_dir / "credentials.json").exists():
        raise StackError(
            f"no installation in {stack.data_dir.resolve()}: start one with `make run`, "
            "or set LOUPE_NATS_URL, LOUPE_NATS_USER and LOUPE_NATS_PASSWORD"
        )
    creds = load_or_create(stack.data_dir)
    return CliNatsSettings(
        nats_url=f"nats://127.0.0.1:{stack.nats_port}",
        nats_user="loupe",
        nats_password=creds.nats_password,
    )


async def _with_store(action: str, args: argparse.Namespace) -> int:
    settings = _cli_nats_settings()
    nc = await connect(settings, "loupe-cli")
    try:
        store = TokenStore(nc.jetstream(), stream_name(TOKENS_BUCKET, settings.namespace))
        await store.check()
        if action == "create":
            expires = (
                datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None
            )
            actor = os.environ.get("USER", "cli")
            record, token = await store.create(
                args.name, Role(args.role), actor, expires_at=expires
            )
            if args.quiet:
                print(token)
            else:
                console.print(f"created token {record.id} ({record.role}) for {record.name}")
                console.print("token (shown once, keep it secret):")
                print(token)
            return 0
        if action == "list":
            _print_tokens(await store.list(), show_revoked=args.all)
            return 0
        revoked = await store.revoke(args.token_id)
        if revoked is None:
            err.print(f"error: no token with id {args.token_id}")
            return 1
        console.print(
            f"revoked token {revoked.id} ({revoked.name}); services refuse it within seconds"
        )
        return 0
    finally:
        await nc.drain()


def _print_tokens(records: list[TokenRecord], *, show_revoked: bool) -> None:
    header = ("id", "name", "role", "created", "by", "expires", "status")
    rows = []
    for record in records:
        if record.revoked_at and not show_revoked:
            continue
        status = "revoked" if record.revoked_at else ("active" if record.active else "expired")
        rows.append(
            (
                record.id,
                record.name,
                str(record.role),
                record.created_at.strftime("%Y-%m-%d %H:%M"),
                record.created_by,
                record.expires_at.strftime("%Y-%m-%d") if record.expires_at else "never",
                status,
            )
        )
    if not console.is_terminal:  # piped: one tab-separated line per token, for scripts
        for row in (header, *rows):
            print("\t".join(row))
        return
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loupe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the platform on the embedded stack")
    run.add_argument(
        "--cluster",
        action="store_true",
        help="three NATS nodes (streams at 3 replicas), two processes of each service behind "
        "the gateway, two result ingesters, replicated object storage (LOUPE_CLUSTER=true)",
    )
    run.set_defaults(func=cmd_run)
    sub.add_parser("setup", help="create streams, buckets and the token bucket").set_defaults(
        func=cmd_setup
    )
    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    tsub = tokens.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a token (printed once)")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. line-7")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--expires-days", type=int, default=0, help="0 = never expires")
    create.add_argument("--quiet", "-q", action="store_true", help="print only the token")
    listing = tsub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    for p in (create, listing, revoke):
        p.set_defaults(func=lambda a: asyncio.run(_with_store(a.action, a)))
    legacy.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("loupe", os.environ.get("LOUPE_LOG_LEVEL", "warning"))
    try:
        code: int = args.func(args)
    except StackError as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        return 2
    except ValidationError as exc:  # a LOUPE_* setting out of its range or of the wrong type
        for problem in exc.errors():
            setting = "LOUPE_" + "_".join(str(part) for part in problem["loc"]).upper()
            err.print(f"error: {setting}: {problem['msg']}", soft_wrap=True)
        return 2
    sys.stdout.flush()
    return code
