"""Faults and bad input on rendered services, against real PostgreSQL.

Each test is one case of docs/reliability.md: a clear message for the person
at the terminal, nothing lost, nothing secret leaked.
"""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import URL, text

from tests.alembic_cli import AWKWARD_PASSWORD, Alembic, settings_env
from tests.postgres import connect, execute, schema_snapshot
from tests.rendering import QUESTIONS, SHIPPED_HEAD, add_bookings_model, render_service
from tests.serving import free_port

pytestmark = pytest.mark.reliability
DRIVERS = ["asyncpg", "psycopg"]
USERS_REVISION = "9b4f7c1e0a62"


@pytest.mark.parametrize("db_driver", DRIVERS)
def test_awkward_password_works_in_every_command(
    db_driver: str, tmp_path: Path, owned_database_url: URL
) -> None:
    project = render_service(tmp_path / "service", db_driver=db_driver)
    alembic = Alembic(project, **settings_env(owned_database_url))

    outputs = alembic.batch("upgrade head", "check", "downgrade -1", "upgrade head")
    add_bookings_model(project)
    outputs.append(alembic("revision", "--autogenerate", "-m", "Add bookings"))
    outputs.append(alembic("upgrade", "head"))
    outputs.append(alembic("upgrade", "head", "--sql"))
    outputs.append(alembic("downgrade", "head:base", "--sql"))
    # The same password inside one DATABASE_URL, percent-encoded as URLs require.
    as_url = Alembic(project, database_url=owned_database_url)
    outputs.append(as_url("current"))

    assert "No new upgrade operations detected" in outputs[1]
    assert "CREATE TABLE bookings" in outputs[6]
    # The script takes the replica lock and sets both timeouts before its first
    # statement, and gives them back after the last.
    script = outputs[6]
    setup = script.index("SELECT pg_advisory_lock(hashtext('alembic:my-service'));")
    assert setup < script.index("SET lock_timeout = 500;") < script.index("BEGIN;")
    assert setup < script.index("SET statement_timeout = 300000;") < script.index("BEGIN;")
    assert script.rindex("COMMIT;") < script.index(
        "SELECT pg_advisory_unlock(hashtext('alembic:my-service'));"
    )
    assert outputs[-1].startswith(open_revision_id(project, "add_bookings"))
    wrong_password = settings_env(owned_database_url, DB_PASSWORD="wrong")
    refused = Alembic(project, **wrong_password).run("current")
    assert refused.returncode != 0
    assert "password authentication failed" in refused.stdout
    for output in [*outputs, refused.stdout, refused.stderr]:
        assert AWKWARD_PASSWORD not in output


def open_revision_id(project: Path, slug: str) -> str:
    (revision,) = project.rglob(f"versions/*{slug}.py")
    return revision.name.split("-")[-1].split("_")[0]


def test_missing_settings_give_one_short_error(tmp_path: Path) -> None:
    project = render_service(tmp_path / "service")

    result = Alembic(project, DB_PASSWORD=AWKWARD_PASSWORD).run("upgrade", "head")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "set DATABASE_URL, or DB_HOST, DB_USER, DB_NAME" in result.stdout
    assert "`make db` starts a PostgreSQL" in result.stdout
    assert len(result.stdout.strip().splitlines()) <= 2
    assert AWKWARD_PASSWORD not in result.stdout + result.stderr


def test_invalid_settings_name_the_variable_not_the_password(tmp_path: Path) -> None:
    project = render_service(tmp_path / "service")
    env = {
        "DB_HOST": "localhost",
        "DB_PORT": "not-a-port",
        "DB_USER": "app",
        "DB_NAME": "app",
        "DB_PASSWORD": AWKWARD_PASSWORD,
    }

    result = Alembic(project, **env).run("upgrade", "head")
    broken_url = Alembic(project, DATABASE_URL=f"mysql://a:{AWKWARD_PASSWORD}@h/db")
    url_result = broken_url.run("upgrade", "head")

    assert result.returncode != 0 and url_result.returncode != 0
    assert "DB_PORT: Input should be a valid integer" in result.stdout
    assert "DATABASE_URL" in url_result.stdout
    for output in (result.stdout + result.stderr, url_result.stdout + url_result.stderr):
        assert "Traceback" not in output
        assert AWKWARD_PASSWORD not in output


@pytest.mark.parametrize("db_driver", DRIVERS)
def test_server_that_never_answers_fails_within_seconds(db_driver: str, tmp_path: Path) -> None:
    """DB_CONNECT_TIMEOUT=2 is what ends the wait: with the default of 10 s, the
    command would still be waiting when the subprocess's own limit of 9 s kills it."""
    project = render_service(tmp_path / "service", db_driver=db_driver)
    # Accepts TCP connections (the kernel does) and never says a word.
    with socket.socket() as silent_server:
        silent_server.bind(("127.0.0.1", 0))
        silent_server.listen()
        port = silent_server.getsockname()[1]
        env = settings_env(
            URL.create("postgresql", host="127.0.0.1", port=port, database="app"),
            DB_CONNECT_TIMEOUT="2",
            DB_PASSWORD=AWKWARD_PASSWORD,
        )
        result = Alembic(project, **env).run("upgrade", "head", timeout=9)

    assert result.returncode != 0
    assert f"Cannot connect to PostgreSQL at 127.0.0.1:{port}" in result.stdout
    assert "Traceback" not in result.stderr
    assert AWKWARD_PASSWORD not in result.stdout + result.stderr


def test_refused_connection_names_host_and_port(tmp_path: Path) -> None:
    project = render_service(tmp_path / "service")
    closed_port = free_port()
    env = settings_env(URL.create("postgresql", host="127.0.0.1", port=closed_port))

    result = Alembic(project, **env).run("current")

    assert result.returncode != 0
    assert f"Cannot connect to PostgreSQL at 127.0.0.1:{closed_port}" in result.stdout
    assert "Traceback" not in result.stderr

    # A Unix socket is a directory, not a host: no port glued to its path.
    socket_dir = tmp_path / ".postgres"
    socket_url = URL.create("postgresql", username="app", database="app")
    socket_url = socket_url.update_query_dict({"host": str(socket_dir)})
    result = Alembic(project, socket_url).run("current")
    assert f"Cannot connect to PostgreSQL at the socket in {socket_dir} (port 5432)" in (
        result.stdout
    )
    assert f"{socket_dir}:5432" not in result.stdout


def test_failing_online_revision_says_what_stays_and_runs_again(
    tmp_path: Path, database_url: URL
) -> None:
    """The "Make email unique" revision builds its index CONCURRENTLY, which commits: a
    failure there cannot be rolled back, and the message must not say so."""
    project = render_service(tmp_path / "service")
    alembic = Alembic(project, database_url)
    alembic("upgrade", USERS_REVISION)
    execute(
        database_url,
        "INSERT INTO users (email, hashed_password) VALUES ('a@example.com', 'x')",
        "INSERT INTO users (email, hashed_password) VALUES ('a@example.com', 'y')",
    )
    before = schema_snapshot(database_url)

    result = alembic.run("upgrade", "head")
    after = schema_snapshot(database_url)
    execute(database_url, "DELETE FROM users WHERE hashed_password = 'y'")
    alembic("upgrade", "head")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "unchanged" not in result.stdout
    assert f"the database is at {USERS_REVISION}" in result.stdout
    assert 'could not create unique index "uq_users_email"' in result.stdout
    # Each failure is said once (not also as a logged ERROR), an unknown revision too.
    assert (result.stdout + result.stderr).count("Migration failed") == 1
    unknown = alembic.run("upgrade", "nosuchrev")
    assert unknown.returncode != 0
    said = unknown.stdout + unknown.stderr
    assert said.count("Can't locate revision identified by 'nosuchrev'") == 1, said
    assert (after["version"], after["users"]) == (before["version"], before["users"])
    assert index_validity(database_url, "users") == {"pk_users": True, "uq_users_email": True}


def index_validity(url: URL, table: str) -> dict[str, bool]:
    with connect(url) as connection:
        rows = connection.execute(
            text(
                "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
                "WHERE indrelid = CAST(:table AS regclass)"
            ),
            {"table": table},
        )
        return {name: valid for name, valid in rows}


CONCURRENT_INDEX_REVISION = f'''\
"""Index hotel titles"""

from alembic import op

revision = "5a0e5a0e5a0e"
down_revision = "{SHIPPED_HEAD}"
branch_labels = None
depends_on = None

PROBE = """
INSERT INTO session_probe
SELECT '{{place}}',
    (SELECT count(*) FROM pg_locks
     WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
    current_setting('lock_timeout'),
    current_setting('statement_timeout'),
    (SELECT count(*) FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid()
         AND backend_type = 'client backend'
         AND application_name <> 'migration lock watcher')
"""


def upgrade() -> None:
    op.execute("CREATE TABLE session_probe (place text, advisory_locks bigint, "
               "lock_timeout text, statement_timeout text, other_sessions bigint)")
    # Long enough that replicas starting together all wait for the lock.
    op.execute("SELECT pg_sleep(1)")
    op.execute(PROBE.format(place="before"))
    with op.get_context().autocommit_block():
        op.execute(PROBE.format(place="inside"))
        op.create_index(
            "ix_hotels_title", "hotels", ["title"], postgresql_concurrently=True
        )
    op.execute(PROBE.format(place="after"))


def downgrade() -> None:
    pass
'''


def test_replicas_upgrading_together_through_a_concurrent_index(
    tmp_path: Path, database_url: URL
) -> None:
    """The lock and the timeouts hold across the autocommit block, and the
    replicas waiting for the lock do not stall the concurrent index build."""
    project = render_service(tmp_path / "service")
    (versions,) = project.rglob("versions")
    (versions / "5a0e5a0e5a0e_index_hotel_titles.py").write_text(CONCURRENT_INDEX_REVISION)
    alembic = Alembic(
        project,
        database_url,
        MIGRATION_LOCK_TIMEOUT_MS="1234",
        MIGRATION_STATEMENT_TIMEOUT_MS="56789",
    )

    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=project,
            env=alembic.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    logs = [replica.communicate(timeout=120) for replica in replicas]

    assert [replica.returncode for replica in replicas] == [0, 0, 0, 0], logs
    combined = "".join(stderr for _, stderr in logs)
    for revision in ("c3a1f9e2b7d4", USERS_REVISION, SHIPPED_HEAD, "5a0e5a0e5a0e"):
        assert combined.count(f"-> {revision},") == 1, combined
    assert alembic("current").startswith("5a0e5a0e5a0e (head)")
    assert index_validity(database_url, "hotels") == {"pk_hotels": True, "ix_hotels_title": True}
    with connect(database_url) as connection:
        probes = connection.execute(text("SELECT * FROM session_probe")).all()
        # This database's only: the other test worker migrates on the same server.
        advisory_locks_left = connection.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
    assert sorted(row[:4] for row in probes) == [
        ("after", 1, "1234ms", "56789ms"),
        ("before", 1, "1234ms", "56789ms"),
        ("inside", 1, "1234ms", "56789ms"),
    ]
    # The replicas overlapped: while one held the lock and migrated, others were
    # connected to the database, waiting for it (run one after another, none would be).
    assert max(row.other_sessions for row in probes) >= 1, probes
    assert advisory_locks_left == 0


def test_no_secret_in_answers_file_or_alembic_ini(tmp_path: Path) -> None:
    project = render_service(tmp_path / "service")

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    ini = (project / "alembic.ini").read_text()

    # The questions' answers, and the layout record that guards `copier update`.
    recorded = {key for key in answers if not key.startswith("_")}
    assert recorded <= {*QUESTIONS, "rendered_layout"}
    assert not [key for key in answers if "password" in key or "url" in key]
    assert "sqlalchemy.url" not in ini and "postgresql" not in ini


def test_settings_repr_and_url_hide_the_password(tmp_path: Path) -> None:
    project = render_service(tmp_path / "service")
    show = (
        "from src.config import get_settings; s = get_settings(); "
        "print(repr(s)); print(s); print(s.sqlalchemy_url); "
        "print(repr(s.sqlalchemy_url))"
    )
    env = settings_env(URL.create("postgresql", host="db", database="app"))
    env["DB_PASSWORD"] = AWKWARD_PASSWORD
    alembic = Alembic(project, **env)

    result = alembic.python(show)

    assert result.returncode == 0, result.stderr
    assert "db_password=SecretStr('**********')" in result.stdout
    assert AWKWARD_PASSWORD not in result.stdout
    assert "p%25a%40s" not in result.stdout


# The app's engine as either variant builds it: the web layer's lifespan and
# `get_engine()` of a service without it both call `create_engine(get_settings())`.
POOL_PROBE = """
from src import database
from src.config import get_settings

engine = database.get_engine() if hasattr(database, "get_engine") else None
pool = (engine or database.create_engine(get_settings())).pool
print(pool.size(), pool._max_overflow, pool.timeout())
"""


@pytest.mark.parametrize("web_framework", ["none", "fastapi"])
def test_pool_settings_size_the_app_engine_in_every_variant(
    tmp_path: Path, web_framework: str
) -> None:
    project = render_service(tmp_path / "service", web_framework=web_framework)
    pooled = Alembic(
        project,
        None,
        DATABASE_URL="postgresql://app@db.example/app",
        DB_POOL_SIZE="3",
        DB_MAX_OVERFLOW="2",
        DB_POOL_TIMEOUT="4.5",
    )

    probe = pooled.python(POOL_PROBE, timeout=60)

    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["3", "2", "4.5"]
