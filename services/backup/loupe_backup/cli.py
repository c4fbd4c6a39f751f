"""`python -m loupe_backup.cli`: backups from a terminal, through the gateway, with progress
bars. The gateway address and token come from `--url`/`--token` or `LOUPE_URL`/`LOUPE_TOKEN`."""

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

console = Console(stderr=True)
_CHUNK = 1024 * 1024


class Failed(Exception):
    pass


def _check(answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        try:
            detail = answer.json().get("detail", answer.text)
        except ValueError:
            detail = answer.text
        raise Failed(f"{answer.status_code}: {detail}")
    return answer.json()


def _bar(unit_bytes: bool) -> Progress:
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if unit_bytes:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    return Progress(*columns, TimeRemainingColumn(), console=console)


def wait_backup(client: httpx.Client, backup_id: str) -> dict[str, Any]:
    with _bar(unit_bytes=True) as bar:
        task = bar.add_task(f"backup {backup_id}", total=None)
        while True:
            state: dict[str, Any] = _check(client.get(f"/api/backups/{backup_id}"))
            p = state["progress"]
            bar.update(
                task,
                total=p["bytes_total"] or None,
                completed=p["bytes_done"],
                description=f"backup {backup_id} [{p['phase']}]",
            )
            if state["status"] != "running":
                return state
            time.sleep(0.5)


def wait_restore(client: httpx.Client, backup_id: str, restore_id: str) -> dict[str, Any]:
    with console.status("restoring") as status:
        while True:
            state: dict[str, Any] = _check(
                client.get(f"/api/backups/{backup_id}/restores/{restore_id}")
            )
            status.update(f"restoring {backup_id}: {state['phase']}")
            if state["status"] != "running":
                return state
            time.sleep(0.5)


def create(client: httpx.Client, args: argparse.Namespace) -> int:
    include = {name: False for name in args.without}
    if args.results_since:
        include["results_since"] = args.results_since
    if args.results_until:
        include["results_until"] = args.results_until
    started = _check(client.post("/api/backups", json={"kind": args.kind, "include": include}))
    if not args.wait:
        print(json.dumps(started, indent=1))
        return 0
    state = wait_backup(client, started["id"])
    print(json.dumps(state, indent=1))
    return 0 if state["status"] == "completed" else 1


def list_sets(client: httpx.Client, args: argparse.Namespace) -> int:
    answer = _check(client.get("/api/backups"))
    if args.json:
        print(json.dumps(answer, indent=1))
        return 0
    table = Table("kind", "status", "compatibility", "objects", "created", title="backup sets")
    table.add_column("id", no_wrap=True)
    for item in answer["items"]:
        table.add_row(
            item["kind"],
            item["status"],
            str(item["compatibility"] or ""),
            str(item["counts"].get("objects", "")),
            item["created_at"][:19],
            item["id"],
        )
    Console().print(table)
    return 0


def verify(client: httpx.Client, args: argparse.Namespace) -> int:
    with console.status(f"verifying {args.id}"):
        report = _check(client.post(f"/api/backups/{args.id}/verify"))
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


def download(client: httpx.Client, args: argparse.Namespace) -> int:
    path = Path(args.file)
    partial = path.with_name(path.name + ".part")
    with client.stream("GET", f"/api/backups/{args.id}/archive") as answer:
        if answer.status_code >= 400:
            answer.read()
            _check(answer)
        total = int(answer.headers.get("content-length", 0)) or None
        with _bar(unit_bytes=True) as bar, partial.open("wb") as out:
            task = bar.add_task(f"download {args.id}", total=total)
            for chunk in answer.iter_bytes(_CHUNK):
                out.write(chunk)
                bar.advance(task, len(chunk))
    partial.replace(path)  # only a whole archive gets the name
    return 0


def _reading(path: Path, bar: Progress) -> Iterator[bytes]:
    task = bar.add_task(f"upload {path.name}", total=path.stat().st_size)
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            bar.advance(task, len(chunk))
            yield chunk


def import_archive(client: httpx.Client, args: argparse.Namespace) -> int:
    path = Path(args.file)
    with _bar(unit_bytes=True) as bar:
        answer = client.post(
            "/api/backups/import",
            content=_reading(path, bar),
            headers={"Content-Type": "application/x-tar"},
        )
    print(json.dumps(_check(answer), indent=1))
    return 0


def restore(client: httpx.Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"mode": args.mode, "dry_run": True}
    if args.tokens is not None:
        body["restore_tokens"] = args.tokens == "yes"
    plan = _check(client.post(f"/api/backups/{args.id}/restore", json=body))
    print(json.dumps(plan, indent=1))
    if not args.yes or not plan["can_restore"]:
        return 0 if plan["can_restore"] else 1
    body |= {"dry_run": False, "restore_point": not args.no_restore_point}
    started = _check(client.post(f"/api/backups/{args.id}/restore", json=body))
    state = wait_restore(client, args.id, started["id"])
    print(json.dumps(state, indent=1))
    return 0 if state["status"] == "completed" else 1


def delete(client: httpx.Client, args: argparse.Namespace) -> int:
    print(json.dumps(_check(client.delete(f"/api/backups/{args.id}")), indent=1))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="loupe-backup", description=__doc__)
    top.add_argument("--url", default=os.environ.get("LOUPE_URL", "http://127.0.0.1:8080"))
    top.add_argument("--token", default=os.environ.get("LOUPE_TOKEN", ""))
    sub = top.add_subparsers(dest="command", required=True)
    made = sub.add_parser("create", help="start a backup")
    made.add_argument("--kind", choices=("full", "incremental"), default="full")
    made.add_argument(
        "--without",
        action="append",
        default=[],
        choices=("programs", "images", "results", "audit"),
        help="leave a part out (repeatable)",
    )
    made.add_argument("--results-since")
    made.add_argument("--results-until")
    made.add_argument("--wait", action="store_true", help="follow its progress")
    made.set_defaults(run=create)
    listing = sub.add_parser("list", help="backup sets")
    listing.add_argument("--json", action="store_true", help="the API's answer as JSON")
    listing.set_defaults(run=list_sets)
    for name, run, helptext in (
        ("verify", verify, "re-hash a set"),
        ("delete", delete, "delete a set (admin)"),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("id")
        command.set_defaults(run=run)
    down = sub.add_parser("download", help="a set as one archive")
    down.add_argument("id")
    down.add_argument("file")
    down.set_defaults(run=download)
    up = sub.add_parser("import", help="import an archive")
    up.add_argument("file")
    up.set_defaults(run=import_archive)
    back = sub.add_parser("restore", help="dry run; with --yes, restore (admin)")
    back.add_argument("id")
    back.add_argument("--mode", choices=("replace", "empty"), default="replace")
    back.add_argument("--yes", action="store_true", help="restore after the dry run")
    back.add_argument("--no-restore-point", action="store_true")
    back.add_argument(
        "--tokens",
        choices=("yes", "no"),
        help="put the set's API tokens back (default: yes for own sets, no for imported ones)",
    )
    back.set_defaults(run=restore)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.token:
        console.print("[red]no token: pass --token or set LOUPE_TOKEN[/red]")
        return 2
    headers = {"Authorization": f"Bearer {args.token}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=120) as client:
        try:
            code: int = args.run(client, args)
        except Failed as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        except httpx.HTTPError as exc:
            console.print(f"[red]cannot reach {args.url}: {exc}[/red]")
            return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
