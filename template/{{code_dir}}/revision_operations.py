"""Where revisions written before v0.17.0 import `backfill` and
`concurrent_index_block` from: released revisions are never edited, so this
path stays. They live in alembic-rollout now; import them from there."""

from alembic_rollout import backfill, concurrent_index_block

__all__ = ["backfill", "concurrent_index_block"]
