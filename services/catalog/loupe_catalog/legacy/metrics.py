"""`legacy_migration_items_total{outcome}`: the programs of applied legacy migration runs, by
outcome, counted once the run's transaction commits (a run rolled back counts nothing)."""

from collections import Counter as Tally
from collections.abc import Iterable
from typing import get_args
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from loupe_catalog.legacy.schemas import ItemReport, Outcome


class MigrationMetrics:
    _by_registry: "WeakKeyDictionary[CollectorRegistry, MigrationMetrics]" = WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "legacy_migration_items_total",
            "Programs of applied legacy migration runs, by outcome",
            ["outcome"],
            registry=registry,
        )
        # Every outcome has a series from the start, so `increase()` sees the first failure.
        for outcome in get_args(Outcome):
            self.items.labels(outcome)
        MigrationMetrics._by_registry[registry] = self

    @classmethod
    def of(cls, registry: CollectorRegistry) -> "MigrationMetrics":
        found = cls._by_registry.get(registry)
        return found if found is not None else cls(registry)

    def count_on_commit(self, session: AsyncSession, items: Iterable[ItemReport]) -> None:
        tally = Tally(item.outcome for item in items)

        def committed(_: Session) -> None:
            for outcome, n in tally.items():
                self.items.labels(outcome).inc(n)

        event.listen(session.sync_session, "after_commit", committed, once=True)
