"""`python -m loupe_catalog [serve|migrate|ingest]`."""

import argparse
import asyncio
import signal
import sys
from functools import partial

from alembic import command
from prometheus_client import CollectorRegistry, start_http_server

from loupe_catalog import migrations
from loupe_catalog.app import build
from loupe_catalog.results.ingest import Ingester
from loupe_catalog.results.stored import announce
from loupe_catalog.settings import CatalogSettings
from loupe_shared.kit.app import serve
from loupe_shared.kit.logging import configure_logging, get_logger
from loupe_shared.kit.nats import connect
from loupe_shared.kit.tasks import cancel_and_wait


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loupe_catalog")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the API (default)")
    migrate = sub.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--down-to", help="instead, downgrade to this revision (or base)")
    sub.add_parser("ingest", help="only ingest results (scale ingest apart from the API)")
    args = parser.parse_args()
    settings = CatalogSettings()
    configure_logging("catalog", settings.log_level)
    if args.command == "migrate":
        config = migrations.alembic_config(settings.database_url())
        target = args.down_to or "head"
        if args.down_to and args.down_to != "base" and not migrations.known_revision(args.down_to):
            get_logger().error("catalog.migrate_unknown_revision", revision=args.down_to)
            return 2
        if args.down_to:
            command.downgrade(config, args.down_to)
        else:
            command.upgrade(config, "head")
        get_logger().info("catalog.migrated", target=target)
        return 0
    if args.command == "ingest":
        asyncio.run(ingest_only(settings))
        return 0
    serve(build(settings), settings)
    return 0


async def ingest_only(settings: CatalogSettings) -> None:
    """An ingester on its own, until SIGTERM or SIGINT."""
    nc = await connect(settings, "loupe-results-ingest")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    registry = CollectorRegistry()
    ingester = Ingester(
        settings,
        nc.jetstream(),
        namespace=settings.namespace,
        registry=registry,
        fetch_messages=settings.ingest_fetch_messages,
        announce=partial(announce, nc, settings.namespace),
    )
    exporter = None
    if settings.ingest_metrics_port:
        exporter, _ = start_http_server(
            settings.ingest_metrics_port, addr=settings.host, registry=registry
        )
        get_logger().info("catalog.ingest_metrics", port=settings.ingest_metrics_port)
    task = asyncio.create_task(ingester.run())
    await stop.wait()
    await cancel_and_wait([task])
    if exporter is not None:
        exporter.shutdown()
    await nc.close()


if __name__ == "__main__":
    sys.exit(main())
