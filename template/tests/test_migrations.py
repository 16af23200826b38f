"""The migration history, checked by pytest-alembic's own tests plus ours.

One head; upgrade base to head; the models match the migrated schema; every
revision upgrades and downgrades individually; each upgrade/downgrade cycle
leaves the schema as it was; downgrade to base leaves nothing behind.
"""

import asyncio

from pytest_alembic import MigrationContext
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from pytest_alembic.tests.experimental import test_downgrade_leaves_no_trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "test_downgrade_leaves_no_trace",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]

# Tables, sequences and user-defined types (enums, domains); not the row and
# array types PostgreSQL creates along with tables and enums.
SCHEMA_OBJECTS_SQL = """
SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = 'public'
UNION ALL
SELECT 'sequence ' || sequencename FROM pg_sequences
WHERE schemaname = 'public'
UNION ALL
SELECT 'type ' || t.typname FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typrelid = 0 AND t.typcategory <> 'A'
"""


async def schema_objects(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        names = await connection.scalars(text(SCHEMA_OBJECTS_SQL))
        return set(names.all())


def test_downgrade_to_base_leaves_nothing_behind(
    alembic_runner: MigrationContext,
    alembic_engine: AsyncEngine,
) -> None:
    alembic_runner.migrate_up_to("heads")
    alembic_runner.migrate_down_to("base")

    left_behind = asyncio.run(schema_objects(alembic_engine))
    assert left_behind == {"table alembic_version"}
