"""Scratch databases and seeded rows, as the rehearsal and the squash proof use them."""

import threading

from alembic_rollout.scratch_databases import drop_database
from alembic_rollout.seeding import seed
from sqlalchemy import URL, text

from tests.postgres import connect, create_database, execute


def test_a_database_whose_last_session_is_closing_is_dropped(
    postgres_server_url: URL, database_url: URL
) -> None:
    scratch = create_database(postgres_server_url, f"{database_url.database}_scratch")
    closing = connect(scratch)
    session = closing.__enter__()
    session.execute(text("SELECT 1"))
    # The session ends a moment after the drop starts: the drop waits for it.
    threading.Timer(0.5, closing.__exit__, (None, None, None)).start()
    with connect(postgres_server_url, autocommit=True) as connection:
        drop_database(connection, str(scratch.database))
        left = connection.scalar(
            text("SELECT count(*) FROM pg_database WHERE datname = :name"),
            {"name": scratch.database},
        )
    assert left == 0


def test_every_table_is_seeded_parents_first(database_url: URL) -> None:
    execute(
        database_url,
        "CREATE TABLE hotels (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "title text NOT NULL)",
        "CREATE TABLE rooms (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "hotel_id bigint NOT NULL REFERENCES hotels (id), price bigint NOT NULL)",
    )
    with connect(database_url) as connection:
        seeded = seed(connection, 500)
        connection.commit()
        orphans = connection.scalar(
            text(
                "SELECT count(*) FROM rooms LEFT JOIN hotels ON hotels.id = hotel_id "
                "WHERE hotels.id IS NULL"
            )
        )
    assert {table: got.rows for table, got in seeded.items()} == {"hotels": 500, "rooms": 500}
    assert orphans == 0
