"""`make drift` in a rendered service: a live database changed by hand is caught, by a
role that can only read, and changes nothing; a deploy in progress, a database Alembic
never ran on, an unknown revision and an unreachable server each get a sentence of
their own and an exit status that CI can tell apart."""

import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import URL, text

from tests.alembic_cli import Alembic
from tests.postgres import connect, execute
from tests.rendering import SHIPPED_HEAD, render_service
from tests.serving import free_port

NO_DRIFT, DRIFT, REFUSED, DEPLOY_IN_PROGRESS = 0, 1, 2, 3
BEFORE_HEAD = "9b4f7c1e0a62"


def drift(project: Path, url: URL) -> subprocess.CompletedProcess[str]:
    alembic = Alembic(project, url)
    return subprocess.run(
        [sys.executable, "-m", "alembic_rollout", "drift"],
        cwd=project,
        env=alembic.env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def database_state(url: URL) -> tuple[object, ...]:
    with connect(url) as connection:
        return (
            connection.scalar(text("SELECT version_num FROM alembic_version")),
            connection.scalar(text("SELECT count(*) FROM alembic_version_log")),
        )


def test_drift_is_named_by_a_reader_that_changes_nothing(
    tmp_path: Path, database_url: URL, reader: URL
) -> None:
    project = render_service(tmp_path / "service")
    Alembic(project, database_url)("upgrade", BEFORE_HEAD)
    execute(database_url, f"GRANT SELECT ON alembic_version TO {reader.username}")

    pending = drift(project, reader)
    assert pending.returncode == NO_DRIFT, pending.stdout + pending.stderr
    assert f"No drift: {database_url.database}" in pending.stdout
    assert f"Pending, not drift: 1 revision(s) not applied yet ({SHIPPED_HEAD})" in pending.stdout

    Alembic(project, database_url)("upgrade", "head")
    execute(
        database_url,
        "CREATE INDEX ix_hotels_title_by_hand ON hotels (title)",
        "ALTER TABLE rooms ALTER COLUMN price TYPE numeric(12,2)",
    )
    before = database_state(database_url)
    drifted = drift(project, reader)

    assert drifted.returncode == DRIFT, drifted.stdout + drifted.stderr
    assert "differs from the schema its history builds in 2 place(s)" in drifted.stdout
    assert (
        "  index ix_hotels_title_by_hand: here, not in the history (made by hand?" in drifted.stdout
    )
    assert "CREATE INDEX ix_hotels_title_by_hand ON public.hotels USING btree (title);" in (
        drifted.stdout
    )
    assert "  column rooms.price: type numeric(12,2) here, bigint in the history" in (
        drifted.stdout
    )
    assert "ALTER TABLE rooms ALTER COLUMN price TYPE numeric(12,2);" in drifted.stdout
    assert drifted.stdout.index("\nhotels:\n") < drifted.stdout.index("\nrooms:\n")
    assert database_state(database_url) == before
    assert "Traceback" not in drifted.stderr

    (project / "drift-exceptions.toml").write_text(
        '[[declared]]\nobject = "index ix_hotels_title_by_hand"\n'
        'reason = "incident 142; its revision is on the way"\n\n'
        '[[declared]]\nobject = "column rooms.price"\nreason = "prices in cents"\n'
    )
    declared = drift(project, reader)
    assert declared.returncode == NO_DRIFT, declared.stdout + declared.stderr
    assert "No drift:" in declared.stdout
    assert "index ix_hotels_title_by_hand: here, not in the history" in declared.stdout
    assert "; declared: incident 142; its revision is on the way" in declared.stdout


def test_what_cannot_be_compared_is_refused_in_a_sentence(
    tmp_path: Path, database_url: URL, postgres_server_url: URL
) -> None:
    project = render_service(tmp_path / "service")

    never_migrated = drift(project, database_url)
    assert never_migrated.returncode == REFUSED
    assert f"{database_url.database} on " in never_migrated.stderr
    assert "has no alembic_version table" in never_migrated.stderr
    assert '"A database that already has the tables"' in never_migrated.stderr

    Alembic(project, database_url)("upgrade", "head")
    with connect(database_url, autocommit=True) as deploy:
        deploy.execute(text("SELECT pg_advisory_lock(hashtext('alembic:my-service'))"))
        in_progress = drift(project, database_url)
    assert in_progress.returncode == DEPLOY_IN_PROGRESS
    assert in_progress.stderr.startswith("make drift: a deploy is in progress")
    assert "nothing was compared" in in_progress.stderr

    execute(database_url, "UPDATE alembic_version SET version_num = '0123456789ab'")
    unknown = drift(project, database_url)
    assert unknown.returncode == REFUSED
    named = f"make drift: {database_url.database} on .+ records revision 0123456789ab, which"
    assert re.search(named, unknown.stderr), unknown.stderr

    closed = URL.create("postgresql", "postgres", host="127.0.0.1", port=free_port())
    unreachable = drift(project, closed)
    assert unreachable.returncode == REFUSED
    assert unreachable.stderr.startswith("make drift: Cannot connect to PostgreSQL at 127.0.0.1")
    missing = drift(project, database_url.set(database=f"{database_url.database}_missing"))
    assert missing.returncode == REFUSED
    assert missing.stderr.startswith("make drift: Cannot connect to PostgreSQL")
    assert "does not exist" in missing.stderr
    for refusal in (never_migrated, in_progress, unknown, unreachable, missing):
        assert len(refusal.stderr.strip().splitlines()) == 1, refusal.stderr
        assert "Traceback" not in refusal.stderr
