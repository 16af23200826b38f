"""alembic_rollout.lock_waits.lock_retries on a real server: a statement that waits
`lock_timeout` for a lock another session holds gives up, steps aside and tries again,
until the lock is free or the budget is spent; anything else is not retried."""

import threading
import time

import pytest
from alembic_rollout.lock_waits import LOCK_NOT_AVAILABLE, LockWaits, lock_retries, sqlstate
from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError

from tests.postgres import connect, execute

ALTER = "ALTER TABLE hotels ADD COLUMN IF NOT EXISTS stars integer"


def alter_with_retries(url: URL, budget_seconds: int, waits: LockWaits) -> None:
    with connect(url, autocommit=True) as connection:
        connection.execute(text("SET lock_timeout = '100ms'"))
        retries = lock_retries(budget_seconds, waits, lambda _: True, 100, ALTER)
        for attempt in retries:
            with attempt:
                connection.execute(text(ALTER))


def test_a_lock_held_for_a_while_is_waited_out_in_short_attempts(database_url: URL) -> None:
    execute(database_url, "CREATE TABLE hotels (id bigint)")
    waits = LockWaits()
    with connect(database_url) as holder:
        holder.execute(text("LOCK TABLE hotels IN ACCESS SHARE MODE"))
        releaser = threading.Timer(1.5, holder.rollback)
        releaser.start()
        started = time.monotonic()
        alter_with_retries(database_url, 60, waits)
        releaser.join()

    assert waits.attempts >= 2, waits
    assert time.monotonic() - started >= 1.5
    with connect(database_url) as connection:
        columns = connection.scalars(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'hotels'")
        ).all()
    assert "stars" in columns


def test_a_lock_held_past_the_budget_ends_the_run(database_url: URL) -> None:
    execute(database_url, "CREATE TABLE hotels (id bigint)")
    waits = LockWaits()
    with connect(database_url) as holder:
        holder.execute(text("LOCK TABLE hotels IN ACCESS SHARE MODE"))
        started = time.monotonic()
        with pytest.raises(DBAPIError) as failure:
            alter_with_retries(database_url, 1, waits)
        holder.rollback()

    assert sqlstate(failure.value) == LOCK_NOT_AVAILABLE
    assert waits.attempts >= 2
    # The budget of 1 s, plus one attempt and a pause at most: never a long wait.
    assert time.monotonic() - started < 1 + 0.1 + 2.5


def test_other_errors_are_not_retried(database_url: URL) -> None:
    waits = LockWaits()
    with pytest.raises(DBAPIError) as failure:
        alter_with_retries(database_url, 60, waits)  # no table hotels
    assert sqlstate(failure.value) == "42P01"
    assert waits.attempts == 0
