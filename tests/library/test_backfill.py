"""alembic_rollout.backfill inside Alembic's operations, on a real server: batches that
commit one by one when the run owns its connection, all in the caller's transaction
when it does not (pytest-alembic, Alembic's cookbook)."""

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic_rollout import backfill
from alembic_rollout.revision_operations import run_transaction_owner
from sqlalchemy import URL, Connection, text

from tests.postgres import connect, execute

ROWS = 95


def hotels_without_stars(url: URL) -> None:
    execute(
        url,
        "CREATE TABLE hotels (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, stars integer)",
        f"INSERT INTO hotels (stars) SELECT NULL FROM generate_series(1, {ROWS})",
    )


def transactions_seen(connection: Connection) -> int:
    """How many transactions wrote the rows: each batch its own xmin."""
    return int(connection.scalar(text("SELECT count(DISTINCT xmin::text) FROM hotels")))


def test_each_batch_commits_on_its_own(database_url: URL) -> None:
    hotels_without_stars(database_url)
    with connect(database_url) as connection:
        context = MigrationContext.configure(connection)
        with Operations.context(context), context.begin_transaction():
            updated = backfill("hotels", "stars = 3", pending="stars IS NULL", batch_size=10)
        assert updated == ROWS
        assert transactions_seen(connection) == 10
        assert connection.scalar(text("SELECT count(*) FROM hotels WHERE stars = 3")) == ROWS


def test_in_the_callers_transaction_the_batches_stay_in_it(database_url: URL) -> None:
    hotels_without_stars(database_url)
    with connect(database_url) as connection:
        context = MigrationContext.configure(connection)
        with Operations.context(context), run_transaction_owner(False):
            transaction = connection.begin()
            updated = backfill("hotels", "stars = 3", pending="stars IS NULL", batch_size=10)
            assert transactions_seen(connection) == 1
            transaction.rollback()
        assert updated == ROWS
        assert connection.scalar(text("SELECT count(*) FROM hotels WHERE stars = 3")) == 0
