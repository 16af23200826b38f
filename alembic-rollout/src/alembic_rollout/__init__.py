"""Alembic migrations under live PostgreSQL traffic; see README.md.

Revisions import `backfill` and `concurrent_index_block` from here; a
service's env.py runs them with `run_migrations_online` and
`migration_session`, under its `MigrationPolicy`.
"""

from alembic_rollout.migration_policy import MigrationPolicy
from alembic_rollout.migration_run import migration_session, run_migrations_online
from alembic_rollout.revision_operations import backfill, concurrent_index_block

__all__ = [
    "MigrationPolicy",
    "backfill",
    "concurrent_index_block",
    "migration_session",
    "run_migrations_online",
]
