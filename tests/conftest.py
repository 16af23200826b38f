"""A real PostgreSQL server for the whole session (tests/postgres.py), a fresh
database per test, and what the fault tests need on top."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.alembic_cli import AWKWARD_PASSWORD
from tests.pgbouncer import NOT_INSTALLED, PGBOUNCER
from tests.postgres import (
    INITDB,
    NO_TLS_SERVER,
    connect,
    create_database,
    drop_database,
    drop_database_on,
    execute,
    postgres_server,
)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[URL]:
    with postgres_server() as server_url:
        yield server_url


@pytest.fixture
def database_url(postgres_server_url: URL) -> Iterator[URL]:
    """A new, empty database on the session's server, dropped afterwards."""
    name = f"template_test_{uuid.uuid4().hex[:12]}"
    yield create_database(postgres_server_url, name)
    drop_database(postgres_server_url, name)


@pytest.fixture(scope="session")
def password_role(postgres_server_url: URL) -> Iterator[str]:
    """A role that must log in with AWKWARD_PASSWORD, even on a trust-auth server.

    Its own name per session (the other xdist worker has one too); at the end the
    role is dropped and its pg_hba.conf lines are taken out again, so a server the
    suite did not start is left as it was.
    """
    role = f"service_owner_{uuid.uuid4().hex[:8]}"
    quoted = AWKWARD_PASSWORD.replace("'", "''")
    # Servers started by tests trust local logins; this role must use its password.
    # (A server elsewhere is checked by the wrong-password assertion instead.)
    rules = f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n"
    with connect(postgres_server_url, autocommit=True) as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{quoted}'"))
        hba_file = Path(connection.scalar(text("SHOW hba_file")))
        if hba_file.exists():
            hba_file.write_text(rules + hba_file.read_text())
            connection.execute(text("SELECT pg_reload_conf()"))
    try:
        yield role
    finally:
        with connect(postgres_server_url, autocommit=True) as connection:
            if hba_file.exists():
                hba_file.write_text(hba_file.read_text().replace(rules, "", 1))
                connection.execute(text("SELECT pg_reload_conf()"))
            # Databases a failed test left behind would keep the role alive.
            owned = connection.scalars(
                text("SELECT datname FROM pg_database WHERE datdba = CAST(:role AS regrole)"),
                {"role": role},
            ).all()
            for database in owned:
                drop_database_on(connection, database)
            connection.execute(text(f"DROP ROLE {role}"))


@pytest.fixture
def password_role_server_url(postgres_server_url: URL, password_role: str) -> URL:
    """The server as the password role: CREATEDB, not a superuser, as a service's
    TEST_DATABASE_URL often is (its tests create and drop databases beside it)."""
    return postgres_server_url.set(username=password_role, password=AWKWARD_PASSWORD)


@pytest.fixture
def owned_database_url(postgres_server_url: URL, password_role: str) -> Iterator[URL]:
    """A new database owned by the password role, with its password in the URL."""
    name = f"template_test_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_server_url, name, owner=password_role)
    yield url.set(username=password_role, password=AWKWARD_PASSWORD)
    drop_database(postgres_server_url, name)


# The longest tests (about 15 to 55 s each), started first so that the two workers
# finish together instead of one waiting on a long test collected last.
LONGEST_FIRST = (
    "test_readme_quick_start_works_line_by_line",
    "test_the_recipes_walk_through_their_releases",
    "test_a_drop_breaks_the_release_and_a_new_column_does_not",
    "test_web_service_holds",
    "test_image_serves_through_pgbouncer_after_a_direct_migration",
    "test_two_branches_conflict_in_git_and_rebase_revision_resolves_it",
    "test_squash_writes_a_proven_baseline_in_the_middle_of_a_history",
    "test_enums_and_empty_revisions_need_no_hand_edits",
    "test_rehearsal_fails_a_one_statement_backfill_and_passes_batched_work",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = getattr(item, "originalname", item.name)
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figure docs/reliability.md refers to, and whether the PgBouncer and
    TLS tests could run."""
    if PGBOUNCER is None:
        terminalreporter.write_line(NOT_INSTALLED, yellow=True, bold=True)
    if INITDB is None:
        terminalreporter.write_line(NO_TLS_SERVER, yellow=True, bold=True)
    outcomes = [
        report.outcome
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport)
        and report.when == "call"
        and "reliability" in report.keywords
    ]
    if outcomes:
        passed = outcomes.count("passed")
        terminalreporter.write_line(
            f"reliability cases (docs/reliability.md): {passed} of {len(outcomes)} passed"
        )


@pytest.fixture
def reader(postgres_server_url: URL, database_url: URL) -> Iterator[URL]:
    """A role that may connect to the test's database and nothing more: a test grants
    what it reads."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    execute(postgres_server_url, f"CREATE ROLE {role} LOGIN PASSWORD 'reader'", autocommit=True)
    execute(database_url, f'GRANT CONNECT ON DATABASE "{database_url.database}" TO {role}')
    yield database_url.set(username=role, password="reader")
    execute(database_url, f"DROP OWNED BY {role}")
    execute(postgres_server_url, f"DROP ROLE {role}", autocommit=True)
