"""`loupe-line`: publish simulated inspection results from a line, inspect the local spool."""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loupe_line.client import LineClient, LineStats
from loupe_line.settings import LineSettings
from loupe_line.simulate import ResultSimulator, SimulationPlan
from loupe_line.spool import SpoolBusyError, summarize

ENVIRONMENT = """\
NATS and spool settings come from the environment:
  LOUPE_LINE_NATS_URL        nats://host:4222 (default nats://127.0.0.1:4222)
  LOUPE_LINE_NATS_USER       user name, if the server asks for one
  LOUPE_LINE_NATS_PASSWORD   its password
  LOUPE_LINE_NAMESPACE       subject/stream prefix (empty in production)
  LOUPE_LINE_LINE_ID         default line id (default line-1)
  LOUPE_LINE_SPOOL_PATH      SQLite spool file (default ./loupe-line-spool.sqlite3)
Tuning (see libs/loupe_line/README.md): LOUPE_LINE_MAX_IN_FLIGHT, _BATCH_MAX, _LINGER_MS,
_PUBLISH_TIMEOUT_S, _RETRY_BASE_S, _RETRY_MAX_S, _BREAKER_FAILURES, _BREAKER_COOLDOWN_S, ...
"""

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _non_negative(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} is negative")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loupe-line",
        description="The production-line client of Loupe.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="warning", help="default: warning (to stderr)")
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser(
        "simulate",
        help="publish simulated inspection results",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--line-id", help="default: LOUPE_LINE_LINE_ID")
    sim.add_argument("--station", default="S1")
    sim.add_argument(
        "--rate",
        type=_non_negative(float),
        default=100.0,
        help="results per second; 0 = as fast as possible (default 100)",
    )
    sim.add_argument("--count", type=_non_negative(int), default=1000, help="default 1000")
    sim.add_argument("--fail-rate", type=_fraction, default=0.05, help="default 0.05")
    sim.add_argument("--error-rate", type=_fraction, default=0.0, help="default 0")
    sim.add_argument("--program-id", type=uuid.UUID)
    sim.add_argument("--program-revision", type=int)
    sim.add_argument("--seed", type=int, help="repeatable verdicts and defects")
    sim.add_argument("--spool", type=Path, help="default: LOUPE_LINE_SPOOL_PATH")
    sim.add_argument(
        "--drain-timeout",
        type=_non_negative(float),
        default=60.0,
        help="at the end, seconds to wait for the spool to be replayed (default 60); what is"
        " left is sent by the next run on the same spool, and the exit status is 3",
    )

    status = commands.add_parser("spool-status", help="what the local spool holds")
    status.add_argument("--spool", type=Path, help="default: LOUPE_LINE_SPOOL_PATH")
    return parser


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


class _Report:
    """A progress bar on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, total: int, interval_s: float = 0.2) -> None:
        self.total = total
        self.tty = console.is_terminal
        self.interval_s = interval_s if self.tty else 2.0
        self._next = 0.0
        self._progress = Progress(
            TextColumn("[bold]simulate"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
        )
        self._task = self._progress.add_task("simulate", total=total, detail="")

    def __enter__(self) -> "_Report":
        if self.tty:
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.tty:
            self._progress.stop()

    def update(self, sent: int, stats_of: Callable[[], LineStats], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval_s
        stats = stats_of()
        detail = (
            f"published {stats.published} · spooled {stats.spooled}"
            f" · replayed {stats.replayed} · breaker {stats.breaker}"
        )
        if self.tty:
            self._progress.update(self._task, completed=sent, detail=detail)
        else:
            print(f"simulate: {sent}/{self.total} sent · {detail}", flush=True)


async def _simulate(args: argparse.Namespace, settings: LineSettings) -> int:
    plan = SimulationPlan(
        line_id=settings.line_id,
        station=args.station,
        fail_rate=args.fail_rate,
        error_rate=args.error_rate,
        program_id=args.program_id,
        program_revision=args.program_revision,
        seed=args.seed,
    )
    simulator = ResultSimulator(plan)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sent = 0
    try:
        client = LineClient(settings)
        await client.start()
    except SpoolBusyError as exc:
        err.print(f"error: {exc}")
        return 2
    started = time.monotonic()
    try:
        with _Report(args.count) as report:
            while sent < args.count and not stop.is_set():
                if args.rate > 0:
                    delay = started + sent / args.rate - time.monotonic()
                    if delay > 0:
                        await _wait(stop, delay)
                        continue
                await client.submit(simulator.next())
                sent += 1
                report.update(sent, client.stats)
            await client.flush()
            if not stop.is_set():
                await _first(stop, client.wait_replayed(args.drain_timeout))
            report.update(sent, client.stats, force=True)
    finally:
        await client.close()  # flushes: every result sent is acknowledged or spooled
    elapsed = time.monotonic() - started
    _summary(settings, sent, elapsed, client.stats(), interrupted=stop.is_set())
    if client.stats().lost:
        return 1
    if stop.is_set():
        return 130
    if client.stats().spool_depth:
        err.print(
            f"warning: {client.stats().spool_depth} messages are still in the spool; the next"
            " run on the same spool sends them"
        )
        return 3
    return 0


async def _first(stop: asyncio.Event, work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` until it ends or `stop` is set, whichever comes first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopper):
        pending.cancel()
    await asyncio.gather(task, stopper, return_exceptions=True)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _summary(
    settings: LineSettings, sent: int, elapsed: float, stats: LineStats, interrupted: bool
) -> None:
    rate = sent / elapsed if elapsed > 0 else 0.0
    head = "interrupted: " if interrupted else ""
    console.print(
        f"{head}line {settings.line_id}: {sent} results in {elapsed:.2f} s"
        f" ({rate:,.0f} results/s)\n"
        f"  published  {stats.published}\n"
        f"  spooled    {stats.spooled}\n"
        f"  replayed   {stats.replayed}\n"
        f"  failures   {stats.failures}\n"
        f"  lost       {stats.lost}\n"
        f"  spool      {stats.spool_depth} messages waiting in {settings.spool_path}",
        soft_wrap=True,
    )


def _spool_status(settings: LineSettings) -> int:
    summary = summarize(settings.spool_path)
    oldest = summary.oldest.isoformat() if summary.oldest else "-"
    console.print(
        f"spool {settings.spool_path}\n"
        f"  depth      {summary.messages} messages\n"
        f"  items      {summary.items} results and requests\n"
        f"  bytes      {summary.payload_bytes}\n"
        f"  oldest     {oldest}",
        soft_wrap=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    overrides: dict[str, Any] = {}
    if args.spool is not None:
        overrides["spool_path"] = args.spool
    if getattr(args, "line_id", None):
        overrides["line_id"] = args.line_id
    try:
        settings = LineSettings(**overrides)
    except ValidationError as exc:
        err.print(f"error: invalid setting\n{exc}")
        return 2
    if args.command == "spool-status":
        return _spool_status(settings)
    if args.error_rate + args.fail_rate > 1:
        err.print("error: --fail-rate plus --error-rate exceeds 1")
        return 2
    return asyncio.run(_simulate(args, settings))


if __name__ == "__main__":
    sys.exit(main())
