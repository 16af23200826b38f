"""The migration history, on real PostgreSQL.

One head; the models match the migrated schema; every revision upgrades,
downgrades to exactly the schema it started from, and upgrades again
(stairway); downgrade to base leaves no table, sequence or type behind.
"""

from pytest_alembic import MigrationContext
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
)
from sqlalchemy import Engine, text

__all__ = ["test_model_definitions_match_ddl", "test_single_head_revision"]

# Everything a revision can create or drop in the public schema, except the
# version table, one line per object: comparable between two moments.
SCHEMA_SQL = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
    || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name <> 'alembic_version'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' '
    || pg_get_constraintdef(oid)
FROM pg_constraint
WHERE connamespace = 'public'::regnamespace
    AND conrelid::regclass::text <> 'alembic_version'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename <> 'alembic_version'
UNION ALL
SELECT 'sequence ' || sequencename FROM pg_sequences
WHERE schemaname = 'public'
UNION ALL
SELECT 'type ' || t.typname FROM pg_type t
WHERE t.typnamespace = 'public'::regnamespace
    AND t.typrelid = 0 AND t.typcategory <> 'A'
"""


def schema(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.scalars(text(SCHEMA_SQL)))


def test_stairway(
    alembic_runner: MigrationContext,
    alembic_engine: Engine,
) -> None:
    current = "base"
    for revision in alembic_runner.history.revisions:
        if revision in ("base", "heads"):
            continue
        before = schema(alembic_engine)
        alembic_runner.migrate_up_to(revision, current=current)
        alembic_runner.migrate_down_to(current, current=revision)
        assert schema(alembic_engine) == before, f"downgrade of {revision}"
        alembic_runner.migrate_up_to(revision, current=current)
        current = revision


def test_downgrade_to_base_leaves_nothing_behind(
    alembic_runner: MigrationContext,
    alembic_engine: Engine,
) -> None:
    alembic_runner.migrate_up_to("heads")
    alembic_runner.migrate_down_to("base")

    assert schema(alembic_engine) == []
