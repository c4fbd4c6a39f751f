from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from loupe_catalog import migrations


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str | None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


class SchemaTooNew(Exception):
    pass


class SchemaBehind(Exception):
    pass


async def state(engine: AsyncEngine) -> SchemaState:
    return SchemaState(await migrations.current_revision(engine), migrations.head_revision())


async def ensure_compatible(engine: AsyncEngine) -> SchemaState:
    """Refuse a database this code cannot serve: one migrated by newer code, or one with
    migrations still pending."""
    found = await state(engine)
    if found.current is not None and not migrations.known_revision(found.current):
        raise SchemaTooNew(
            f"the database schema is at revision {found.current}, newer than this code "
            f"(head {found.head}); run a Loupe version that knows it"
        )
    if not found.up_to_date:
        raise SchemaBehind(
            f"the database schema is at revision {found.current or 'base (empty)'} but this code "
            f"needs {found.head}; run `python -m loupe_catalog migrate` first"
        )
    return found
