"""The session every migration run holds (alembic_rollout.migration_run), on a real
connection: the lock and the timeouts survive the commits of an autocommit block (CREATE
INDEX CONCURRENTLY), and are released and put back when the run ends. A command that only
reads (`alembic current`, `check`) takes neither."""

import threading

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from alembic_rollout import MigrationPolicy
from alembic_rollout.migration_run import migration_session
from sqlalchemy import URL, Connection, text

from tests.postgres import connect

POLICY = MigrationPolicy("alembic:library-test", lock_timeout_ms=1234, statement_timeout_ms=5678)
# As `alembic upgrade head` configures its context; `alembic current` names no destination.
UPGRADE = {"destination_rev": "head"}
SESSION_STATE = """
SELECT (SELECT count(*) FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
       current_setting('lock_timeout'),
       current_setting('statement_timeout')
"""


def session_state(connection: Connection) -> tuple[object, ...]:
    row = connection.execute(text(SESSION_STATE)).one()
    connection.rollback()
    return tuple(row)


def test_lock_and_timeouts_outlive_commits_then_end(database_url: URL) -> None:
    with connect(database_url) as connection:
        before = session_state(connection)
        migration_context = MigrationContext.configure(connection, opts=UPGRADE)

        with migration_session(migration_context, POLICY):
            connection.execute(text("SELECT 1"))
            connection.commit()  # What an autocommit block does.
            during = session_state(connection)

        assert before == (0, "0", "0")
        assert during == (1, "1234ms", "5678ms")
        assert session_state(connection) == before


def test_what_only_reads_takes_no_lock(database_url: URL) -> None:
    with connect(database_url) as connection:
        before = session_state(connection)

        with migration_session(MigrationContext.configure(connection), POLICY):
            during = session_state(connection)

        assert during == before == (0, "0", "0")


@pytest.mark.parametrize("commit_first", [False, True])
def test_failure_says_what_was_rolled_back(database_url: URL, commit_first: bool) -> None:
    with connect(database_url) as connection:
        before = session_state(connection)
        migration_context = MigrationContext.configure(connection, opts=UPGRADE)

        with (
            pytest.raises(CommandError) as failure,
            migration_session(migration_context, POLICY),
        ):
            connection.execute(text("CREATE TABLE kept (id bigint)"))
            if commit_first:
                connection.commit()
            connection.execute(text("SELECT no_such_column FROM kept"))

        message = str(failure.value)
        assert "no_such_column" in message
        unchanged = "rolled back; the database is unchanged"
        if commit_first:
            assert unchanged not in message
            assert "not all rolled back" in message
        else:
            assert unchanged in message
        assert session_state(connection) == before
        kept = connection.scalar(text("SELECT to_regclass('kept') IS NOT NULL"))
        assert kept is commit_first


def test_a_run_waiting_for_the_lock_says_who_holds_it(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    key = {"key": POLICY.lock_key}
    with connect(database_url, autocommit=True) as holder, connect(database_url) as waiting:
        holder.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
        holder_pid = holder.scalar(text("SELECT pg_backend_pid()"))

        def let_go() -> None:
            holder.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)

        # The holder lets go a second after the waiting run's first notice.
        threading.Timer(1.0, let_go).start()
        with migration_session(MigrationContext.configure(waiting, opts=UPGRADE), POLICY):
            held_during_the_run = session_state(waiting)[0]

    notices = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("Waiting for the migration lock")
    ]
    assert notices and f"pid {holder_pid}, " in notices[0]
    assert held_during_the_run == 1
