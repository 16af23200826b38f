"""Deploying under live traffic: a revision needs a lock that another session holds.

Two clients read `users` by key every 10 ms while `alembic upgrade` runs, and record
what each read waited. A queued ALTER TABLE makes every read queue behind it, so the
reads show whether the run stepped aside (lock_timeout, 500 ms per attempt) or stalled
them. Margins are seconds against hundreds of ms; nothing waits on a fixed sleep.
"""

import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError

from tests.alembic_cli import Alembic
from tests.lock_traffic import (
    NEW_COLUMN_REVISION,
    AlembicProcess,
    holding,
    key_reads,
    lock_waits_logged,
)
from tests.postgres import connect, execute, log_rows, schema_snapshot
from tests.rendering import SHIPPED_HEAD, render_service

pytestmark = pytest.mark.reliability
READER = "nightly report"
ONE_USER = "SELECT email FROM users WHERE id = 1"
# Commands that read the database and change nothing.
READ_ONLY = (["current"], ["heads"], ["history", "--indicate-current"], ["check"])

INDEX_REVISION = '''\
"""Index hotel titles"""

from alembic import op

from src.revision_operations import concurrent_index_block

revision = "5a0e5a0e5a0e"
down_revision = "6b1f6b1f6b1f"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with concurrent_index_block() as concurrently:
        op.create_index(
            "ix_hotels_title",
            "hotels",
            ["title"],
            postgresql_concurrently=concurrently,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_hotels_title", table_name="hotels")
'''


@pytest.fixture
def service_with_users(tmp_path: Path, database_url: URL) -> tuple[Path, Alembic]:
    """The default service at the shipped head, with one user, and a new revision
    that adds a column to `users` (ALTER TABLE: an ACCESS EXCLUSIVE lock)."""
    project = render_service(tmp_path / "service")
    (versions,) = project.rglob("versions")
    (versions / "6b1f6b1f6b1f_add_nickname_to_users.py").write_text(NEW_COLUMN_REVISION)
    alembic = Alembic(project, database_url)
    alembic("upgrade", SHIPPED_HEAD)
    execute(database_url, "INSERT INTO users (email, hashed_password) VALUES ('a@b.c', 'x')")
    return project, alembic


def test_revision_behind_a_reader_completes_after_it_and_traffic_never_stalls(
    service_with_users: tuple[Path, Alembic], database_url: URL
) -> None:
    project, alembic = service_with_users

    with key_reads(database_url, ONE_USER) as waits:
        with holding(database_url, "SELECT count(*) FROM users", READER):
            run = AlembicProcess(project, alembic.env, "upgrade", "head")
            # Four attempts gave up: about 3 s with the table held. One wait for
            # the lock would have stalled every read for all of it.
            run.wait_for(lock_waits_logged(4))
        returncode, log = run.finish()

    assert returncode == 0, log
    assert f"application '{READER}'" in log and "on users" in log
    assert "ALTER TABLE users ADD COLUMN nickname" in log
    assert "Completed in " in log and "lock wait(s) that gave up" in log
    assert alembic("current").startswith("6b1f6b1f6b1f (head)")
    # The revision log holds the attempt that committed, once.
    assert [row[:2] for row in log_rows(database_url)].count(("6b1f6b1f6b1f", "upgrade")) == 1
    assert len(waits) > 50
    # One attempt holds reads back for at most lock_timeout (500 ms).
    assert max(waits) < 1.5, f"worst read: {max(waits):.2f} s"


def test_what_only_reads_answers_during_a_blocked_run_and_a_second_run_names_the_first(
    service_with_users: tuple[Path, Alembic], database_url: URL
) -> None:
    """While `alembic upgrade` waits behind a reader, holding the migration lock, the
    commands that only read answer at once and write nothing, on a database adopted
    the README's way; a second upgrade says at once which session holds the lock."""
    project, alembic = service_with_users
    # Adopted: a schema built without the revision log, then `alembic stamp`.
    execute(database_url, "DROP TABLE alembic_version_log", "DELETE FROM alembic_version")
    alembic("stamp", SHIPPED_HEAD)
    stamped = log_rows(database_url)
    for command in READ_ONLY:
        alembic.run(*command)
    assert log_rows(database_url) == stamped

    with holding(database_url, "SELECT count(*) FROM users", READER):
        run = AlembicProcess(project, alembic.env, "upgrade", "head")
        run.wait_for(lock_waits_logged(1))
        at_block = log_rows(database_url)
        took = {}
        for command in READ_ONLY:
            started = time.monotonic()
            answer = alembic.run(*command, timeout=60)
            took[" ".join(command)] = time.monotonic() - started
            if command == ["current"]:
                assert answer.stdout.startswith(SHIPPED_HEAD), answer.stdout + answer.stderr
        with connect(database_url) as connection:
            others = connection.execute(
                text(
                    "SELECT pid, application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        second = AlembicProcess(project, alembic.env, "upgrade", "head")
        second.wait_for(lambda lines: any("Waiting for the migration lock" in x for x in lines))
        assert log_rows(database_url) == at_block
    returncode, log = run.finish()
    second_returncode, second_log = second.finish()

    assert all(seconds < 10 for seconds in took.values()), took
    migrating = [pid for pid, name in others if name == "my-service-alembic"]
    assert migrating, others
    (waiting,) = [line for line in second_log.splitlines() if "Waiting for the migration" in line]
    assert f"pid {migrating[0]}" in waiting and "application 'my-service-alembic'" in waiting
    assert returncode == 0 and second_returncode == 0, log + second_log
    assert alembic("current").startswith("6b1f6b1f6b1f (head)")
    assert [row[:2] for row in log_rows(database_url)].count(("6b1f6b1f6b1f", "upgrade")) == 1


def test_reader_outlasting_the_budget_is_named_and_nothing_changes(
    service_with_users: tuple[Path, Alembic], database_url: URL
) -> None:
    project, alembic = service_with_users
    env = {**alembic.env, "MIGRATION_LOCK_RETRY_SECONDS": "2"}
    before = schema_snapshot(database_url)

    with holding(database_url, "SELECT count(*) FROM users", READER) as reader_pid:
        run = AlembicProcess(project, env, "upgrade", "head")
        returncode, log = run.finish()

    assert returncode != 0
    assert "rolled back; the database is unchanged" in log
    assert "lock_timeout (500 ms) expired" in log and "MIGRATION_LOCK_RETRY_SECONDS=2" in log
    assert f"pid {reader_pid}" in log and f"application '{READER}'" in log
    assert "SELECT count(*) FROM users" in log
    assert f"SELECT pg_terminate_backend({reader_pid});" in log
    assert "Traceback" not in log
    assert schema_snapshot(database_url) == before

    # Without retries, the first wait that gives up ends the run, and still names it.
    no_retries = {**alembic.env, "MIGRATION_LOCK_RETRY_SECONDS": "0"}
    with holding(database_url, "SELECT count(*) FROM users", READER) as reader_pid:
        returncode, log = AlembicProcess(project, no_retries, "upgrade", "head").finish()
    assert returncode != 0 and "1 attempt(s)" in log and f"pid {reader_pid}" in log
    assert "Trying again" not in log
    assert schema_snapshot(database_url) == before


def test_interrupted_concurrent_index_build_is_not_taken_for_done(
    service_with_users: tuple[Path, Alembic], database_url: URL
) -> None:
    """CREATE INDEX CONCURRENTLY commits an INVALID index, then waits for the writers of
    the table; a build that gives up waiting leaves it, and IF NOT EXISTS would skip it."""
    project, alembic = service_with_users
    (versions,) = project.rglob("versions")
    (versions / "5a0e5a0e5a0e_index_hotel_titles.py").write_text(INDEX_REVISION)
    alembic("upgrade", "6b1f6b1f6b1f")
    no_retries = {**alembic.env, "MIGRATION_LOCK_RETRY_SECONDS": "0"}
    writer = "UPDATE hotels SET title = title"

    with holding(database_url, writer, "bulk import") as writer_pid:
        returncode, log = AlembicProcess(project, no_retries, "upgrade", "head").finish()
        assert returncode != 0, log
        assert f"pid {writer_pid}" in log and "application 'bulk import'" in log
        assert "the failing revision ran in an autocommit block stays" in log
        assert index_validity(database_url) == {"ix_hotels_title": False}
        # What the autocommit block committed is no applied step: no row.
        assert "5a0e5a0e5a0e" not in {row[0] for row in log_rows(database_url)}

        # With retries, the next run drops it, and builds it once the writer is gone.
        run = AlembicProcess(project, alembic.env, "upgrade", "head")
        run.wait_for(lock_waits_logged(2))
    returncode, log = run.finish()

    assert returncode == 0, log
    assert "Dropped ix_hotels_title, left INVALID by a failed build." in log
    assert index_validity(database_url) == {"ix_hotels_title": True}
    assert alembic("current").startswith("5a0e5a0e5a0e (head)")
    assert [row[:2] for row in log_rows(database_url)][-1] == ("5a0e5a0e5a0e", "upgrade")
    assert [row[0] for row in log_rows(database_url)].count("5a0e5a0e5a0e") == 1


def index_validity(url: URL) -> dict[str, bool]:
    with connect(url) as connection:
        rows = connection.execute(
            text(
                "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
                "WHERE indexrelid::regclass::text LIKE 'ix_hotels_%'"
            )
        )
        return {name: valid for name, valid in rows}


def test_scripts_say_what_they_cannot_retry(service_with_users: tuple[Path, Alembic]) -> None:
    _, alembic = service_with_users

    script = alembic("upgrade", f"{SHIPPED_HEAD}:head", "--sql")

    assert "-- A script cannot step aside and retry a lock wait" in script
    assert script.index("SET lock_timeout = 500") < script.index("ALTER TABLE users")


def test_lock_waits_are_told_apart_by_sqlstate_on_a_server_answering_in_russian(
    service_with_users: tuple[Path, Alembic], database_url: URL
) -> None:
    """The team's servers may answer in Russian: a lock wait that gives up is
    «выполнение оператора отменено из-за тайм-аута блокировки» there, and is still
    named and retried, because it is recognised by SQLSTATE 55P03."""
    project, alembic = service_with_users
    with connect(database_url, autocommit=True) as connection:
        russian = "SET lc_messages TO 'ru_RU.UTF-8'"
        try:
            connection.execute(text(russian))
            connection.execute(text("SELECT 1 / 0"))
        except DBAPIError as error:
            answer = str(error.orig)
        if "деление на ноль" not in answer:
            pytest.skip(
                "this server cannot answer in Russian (no ru_RU.UTF-8 locale, or built "
                f"without translations): {answer!r}; .ci/run's PostgreSQL 15 pass runs it"
            )
        database = database_url.database
        connection.execute(text(f'ALTER DATABASE "{database}" {russian}'))

    no_retries = {**alembic.env, "MIGRATION_LOCK_RETRY_SECONDS": "0"}
    with holding(database_url, "SELECT count(*) FROM users", READER):
        returncode, log = AlembicProcess(project, no_retries, "upgrade", "head").finish()
        run = AlembicProcess(project, alembic.env, "upgrade", "head")
        run.wait_for(lock_waits_logged(2))
    finished, retried_log = run.finish()

    assert returncode != 0
    assert "lock_timeout (500 ms) expired" in log and "тайм-аут" not in log
    assert "rolled back; the database is unchanged" in log
    assert finished == 0, retried_log
    assert alembic("current").startswith("6b1f6b1f6b1f (head)")


BACKFILL_REVISION = '''\
"""Fill nicknames"""

from src.revision_operations import backfill

revision = "7c2d7c2d7c2d"
down_revision = "6b1f6b1f6b1f"
branch_labels = None
depends_on = None


def upgrade() -> None:
    backfill("users", "nickname = 'user ' || id", "nickname IS NULL", batch_size=10)


def downgrade() -> None:
    pass
'''
HALT_AT_57 = """
CREATE FUNCTION halt_at_57() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 57 THEN RAISE EXCEPTION 'halted at user 57'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER halt_at_57 BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION halt_at_57();
"""


def test_backfill_failing_halfway_keeps_its_batches_and_resumes(
    service_with_users: tuple[Path, Alembic], database_url: URL
) -> None:
    project, alembic = service_with_users
    (versions,) = project.rglob("versions")
    (versions / "7c2d7c2d7c2d_fill_nicknames.py").write_text(BACKFILL_REVISION)
    alembic("upgrade", "6b1f6b1f6b1f")
    execute(
        database_url,
        "INSERT INTO users (email, hashed_password) "
        "SELECT 'user' || n || '@example.com', 'x' FROM generate_series(2, 95) AS n",
        HALT_AT_57,
    )

    halted = alembic.run("upgrade", "head")

    assert halted.returncode != 0
    assert "halted at user 57" in halted.stdout
    assert "the failing revision ran in an autocommit block stays" in halted.stdout
    # Batches of 10 by id: 1-10 to 41-50 committed; 51-60 was rolled back.
    assert filled_nicknames(database_url) == 50
    assert alembic("current").startswith("6b1f6b1f6b1f")

    execute(database_url, "DROP TRIGGER halt_at_57 ON users")
    alembic("upgrade", "head")

    assert filled_nicknames(database_url) == 95

    # The script does the same in a DO block, committing batch by batch.
    script = alembic("upgrade", "6b1f6b1f6b1f:head", "--sql")
    execute(
        database_url,
        "UPDATE users SET nickname = NULL",
        "UPDATE alembic_version SET version_num = '6b1f6b1f6b1f'",
    )
    psql_url = database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    psql = ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", psql_url]
    subprocess.run(psql, input=script, text=True, check=True, capture_output=True)
    assert filled_nicknames(database_url) == 95
    assert alembic("current").startswith("7c2d7c2d7c2d (head)")


def filled_nicknames(url: URL) -> int:
    with connect(url) as connection:
        filled = connection.scalar(text("SELECT count(*) FROM users WHERE nickname IS NOT NULL"))
    return int(filled)
