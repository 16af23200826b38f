"""The tools of `alembic-rollout COMMAND`, one module each (__main__.py)."""
