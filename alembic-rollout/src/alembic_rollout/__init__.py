"""Alembic migrations under live PostgreSQL traffic; see README.md.

Revisions import `backfill` and `concurrent_index_block` from here.
"""

from alembic_rollout.revision_operations import backfill, concurrent_index_block

__all__ = ["backfill", "concurrent_index_block"]
