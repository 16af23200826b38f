"""Migrations on a connection that the caller owns, as Alembic's cookbook runs them
("Programmatic API use (connection sharing) With Asyncio") and pytest-alembic does.

Nothing may commit the caller's transaction, so the run keeps its fallback: no lock
retries, `concurrent_index_block()` without CONCURRENTLY, `backfill()`'s batches in
that one transaction. The run says so, once; a plain `alembic upgrade` says nothing.
"""

from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.alembic_cli import Alembic
from tests.postgres import connect, execute
from tests.rendering import SHIPPED_HEAD, render_service
from tests.revision_files import Revision

pytestmark = pytest.mark.reliability
FALLBACK = "Migrating inside the caller's transaction"
RATE_HOTELS = Revision(
    "7c2e7c2e7c2e",
    "Rate hotels",
    [
        'op.add_column("hotels", sa.Column("rating", sa.Integer()))',
        'backfill("hotels", "rating = 3", pending="rating IS NULL", batch_size=1)',
        "with concurrent_index_block() as concurrently:\n"
        '        op.create_index("ix_hotels_rating", "hotels", ["rating"],'
        " postgresql_concurrently=concurrently)",
    ],
    [
        'op.drop_index("ix_hotels_rating", table_name="hotels")',
        'op.drop_column("hotels", "rating")',
    ],
    imports=("from src.revision_operations import backfill, concurrent_index_block",),
)
COOKBOOK = """\
import asyncio

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from src.config import get_settings


def run_upgrade(connection, config):
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def main():
    engine = create_async_engine(get_settings().sqlalchemy_url)
    async with engine.begin() as connection:
        await connection.run_sync(run_upgrade, Config("alembic.ini"))
    await engine.dispose()


asyncio.run(main())
"""


def test_the_cookbook_recipe_applies_batched_work_and_says_what_is_off(
    tmp_path: Path, database_url: URL
) -> None:
    project = render_service(tmp_path / "service")
    RATE_HOTELS.write(project, "rate_hotels")
    alembic = Alembic(project, database_url)
    plain = alembic.run("upgrade", SHIPPED_HEAD)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert FALLBACK not in plain.stdout + plain.stderr
    execute(
        database_url,
        *(f"INSERT INTO hotels (title, location) VALUES ('Hotel {n}', 'Here')" for n in range(3)),
    )

    recipe = alembic.python(COOKBOOK)

    output = recipe.stdout + recipe.stderr
    assert recipe.returncode == 0, output
    (warning,) = [line for line in output.splitlines() if FALLBACK in line]
    for what_is_off in ("no lock retries", "no CONCURRENTLY", "backfill()'s batches"):
        assert what_is_off in warning
    with connect(database_url) as connection:
        ratings = connection.scalars(text("SELECT DISTINCT rating FROM hotels")).all()
        version = connection.scalar(text("SELECT version_num FROM alembic_version"))
        index_valid = connection.scalar(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_hotels_rating'::regclass")
        )
    assert (ratings, version, index_valid) == ([3], RATE_HOTELS.revision, True)

    # The service's own run owns its connection: the same revision, not a word of it.
    for command in (["downgrade", "-1"], ["upgrade", "head"]):
        owned = alembic.run(*command)
        assert owned.returncode == 0, owned.stdout + owned.stderr
        assert "Running" in owned.stderr and FALLBACK not in owned.stdout + owned.stderr
