"""A pytest plugin that `make check-compat` loads into the base's tests
(alembic_rollout/commands/check_compat.py): each database they migrate to "head" is migrated
by the checkout under check instead, in a process of its own
(alembic_rollout/commands/compat_migrations.py), so that the two codebases never share an
import path.

It imports nothing of either service, nor of alembic_rollout (the base may
have another version, or none): the base's process finds this folder alone
on PYTHONPATH, and the base's Alembic is the one it wraps.
"""

import os
import subprocess
from functools import cache

import pytest
from alembic import command
from alembic.config import Config

# Begins the answer of alembic_rollout/commands/compat_migrations.py.
ANSWER = "check-compat-migrated:"
upgrade_of_the_base = command.upgrade


@cache
def new_revisions() -> subprocess.Popen[str]:
    """The checkout's migration process, started for the first database."""
    return subprocess.Popen(
        [os.environ["CHECK_COMPAT_PYTHON"], "-m", "alembic_rollout.commands.compat_migrations"],
        cwd=os.environ["CHECK_COMPAT_ROOT"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def upgrade_with_the_new_revisions(
    config: Config,
    revision: str,
    sql: bool = False,
    tag: str | None = None,
) -> None:
    if revision != "head" or sql:
        upgrade_of_the_base(config, revision, sql=sql, tag=tag)
        return
    process = new_revisions()
    assert process.stdin is not None and process.stdout is not None
    # The test's database, which the base's fixture has just set.
    process.stdin.write(os.environ["DATABASE_URL"] + "\n")
    process.stdin.flush()
    for line in process.stdout:
        if line.startswith(ANSWER):
            answer = line.removeprefix(ANSWER).strip()
            if answer != "ok":
                raise RuntimeError(f"the new revisions {answer}")
            return
    raise RuntimeError("the new revisions' migration process ended")


def pytest_configure(config: pytest.Config) -> None:
    command.upgrade = upgrade_with_the_new_revisions


def pytest_unconfigure(config: pytest.Config) -> None:
    if new_revisions.cache_info().currsize:
        new_revisions().communicate()
