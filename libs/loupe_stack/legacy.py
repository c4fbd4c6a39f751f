"""`loupe migrate-legacy FILE`: send a localStorage export to the catalog's legacy migration
(`POST /api/migrations/legacy`) and print its report as a table.

A dry run unless `--apply`. The gateway is `--url` (or `LOUPE_GATEWAY_URL`), the token
`LOUPE_TOKEN` (an environment variable, never an argument other users could see); without
them, the local installation in the data folder and its admin token.
"""

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from loupe_stack.config import StackSettings
from loupe_stack.credentials import load_or_create
from loupe_stack.processes import StackError

CHUNK = 256 * 1024
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)
_WOULD = {"imported": "would import", "revised": "would revise"}
_STYLE = {
    "imported": "green",
    "revised": "cyan",
    "already_migrated": "dim",
    "duplicate": "yellow",
    "invalid": "red",
    "failed": "bold red",
}


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser(
        "migrate-legacy",
        help="migrate programs from the legacy frontend's localStorage export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, nargs="?", help="the exported JSON")
    parser.add_argument("--apply", action="store_true", help="migrate (default: a dry run)")
    parser.add_argument("--rollback", metavar="RUN_ID", help="undo a recorded run instead")
    parser.add_argument("--url", default=os.environ.get("LOUPE_GATEWAY_URL"), help="gateway")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_migrate_legacy)


def _target(url: str | None) -> tuple[str, str]:
    token = os.environ.get("LOUPE_TOKEN", "")
    stack = StackSettings()
    if url and token:
        return url.rstrip("/"), token
    if not (stack.data_dir / "credentials.json").exists():
        raise StackError(
            "set LOUPE_GATEWAY_URL (or --url) and LOUPE_TOKEN, or run it beside a local "
            "installation started with `make run`"
        )
    return (url or f"http://127.0.0.1:{stack.gateway_port}").rstrip("/"), token or (
        load_or_create(stack.data_dir).admin_token
    )


def _chunks(path: Path, progress: Progress) -> Iterator[bytes]:
    task = progress.add_task("sending", total=path.stat().st_size)
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            progress.advance(task, len(chunk))
            yield chunk
    progress.update(task, description="migrating")


def _problem(answer: httpx.Response) -> str:
    try:
        body = answer.json()
        return f"{answer.status_code} {body.get('title', '')}: {body.get('detail', '')}"
    except ValueError:
        return f"{answer.status_code}: {answer.text[:300]}"


def print_report(report: dict[str, Any]) -> None:
    dry = report["dry_run"]
    title = "Dry run — nothing was written" if dry else f"Migration run {report['run_id']}"
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("legacy id", overflow="fold")
    table.add_column("name", overflow="fold")
    table.add_column("outcome", no_wrap=True)
    table.add_column("program", overflow="fold")
    table.add_column("why / notes", overflow="fold")
    for item in report["items"]:
        outcome = item["outcome"]
        label = _WOULD.get(outcome, outcome) if dry else outcome
        notes = [item["reason"]] if item.get("reason") else []
        notes += item.get("warnings") or []
        if item.get("image_sent") is False:
            notes.append("image already stored")
        program = item.get("program_id") or ""
        if program and item.get("revision"):
            program = f"{program} r{item['revision']}"
        table.add_row(
            str(item["position"]),
            item.get("legacy_id") or "",
            item.get("name") or "",
            f"[{_STYLE.get(outcome, '')}]{label}[/]",
            program,
            "; ".join(notes),
        )
    console.print(table)
    totals = report["totals"]
    console.print(
        ", ".join(
            f"{(_WOULD.get(key, key) if dry else key).replace('_', ' ')} {value}"
            for key, value in totals.items()
        ),
        soft_wrap=True,
    )
    if dry and totals.get("imported", 0) + totals.get("revised", 0):
        console.print("Run again with --apply to migrate.")


def cmd_migrate_legacy(args: argparse.Namespace) -> int:
    url, token = _target(args.url)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        if args.rollback:
            answer = client.post(f"/api/migrations/{args.rollback}/rollback")
            if answer.status_code != 200:
                err.print(f"error: {_problem(answer)}", soft_wrap=True)
                return 2
            for item in answer.json()["items"]:
                reason = f" ({item['reason']})" if item.get("reason") else ""
                console.print(
                    f"{item['action']:9} {item['program_id']} {item['legacy_id']}{reason}"
                )
            return 0
        if args.file is None:
            err.print("error: give the exported JSON file (or --rollback RUN_ID)")
            return 2
        if not args.file.is_file():
            err.print(f"error: no file {args.file}")
            return 2
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        with Progress(*columns, console=err, transient=True) as progress:
            answer = client.post(
                "/api/migrations/legacy",
                params={"dry_run": "false" if args.apply else "true"},
                content=_chunks(args.file, progress),
                headers={
                    "Content-Type": "application/json",
                    "Content-Length": str(args.file.stat().st_size),
                },
            )
    if answer.status_code not in (200, 201):
        err.print(f"error: {_problem(answer)}", soft_wrap=True)
        return 2
    report: dict[str, Any] = answer.json()
    if args.json:
        sys.stdout.write(answer.text + "\n")
    else:
        print_report(report)
    return 1 if report["totals"].get("failed", 0) else 0
