"""Dropping the databases that tests and `make squash` create for themselves.

`DROP DATABASE ... WITH (FORCE)` terminates every other session in the
database first, and a role that is not a superuser may not terminate them
all: an autovacuum worker that has just started on a fresh database is one
(InsufficientPrivilege, about one test run in twelve under a CREATEDB role).
A plain DROP DATABASE ends autovacuum workers itself and waits for them; it
refuses only while a client session is connected, so it is tried again while
the connections that the caller just closed finish leaving the server.
"""

import time

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

# SQLSTATE object_in_use: "database ... is being accessed by other users".
OBJECT_IN_USE = "55006"
CLOSING_CONNECTIONS_SECONDS = 10.0


def drop_database(connection: Connection, name: str) -> None:
    """Drop `name` from an autocommit `connection` to another database.

    Close your own connections to `name` first: a session still connected
    after CLOSING_CONNECTIONS_SECONDS is an error, as PostgreSQL reports it.
    """
    deadline = time.monotonic() + CLOSING_CONNECTIONS_SECONDS
    while True:
        try:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except DBAPIError as error:
            sqlstate = getattr(error.orig, "sqlstate", None)
            if sqlstate != OBJECT_IN_USE or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
