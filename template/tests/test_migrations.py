"""The migration history, on real PostgreSQL.

One head; the models match the migrated schema; every revision upgrades,
downgrades to exactly the schema it started from, and upgrades again
(stairway); downgrade to base leaves no table, sequence or type behind.
"Exactly" is the catalog of alembic_rollout.schema_catalog: column types with
their length, defaults, constraint and index definitions, enum values in
order, and the rest.
"""

from alembic_rollout.schema_catalog import catalog
from pytest_alembic import MigrationContext
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
)
from sqlalchemy import Engine

__all__ = ["test_model_definitions_match_ddl", "test_single_head_revision"]


def schema(engine: Engine) -> list[str]:
    """The catalog, column positions left out: a downgrade that adds a
    dropped column back can only add it last."""
    with engine.connect() as connection:
        return catalog(connection, column_positions=False)


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
