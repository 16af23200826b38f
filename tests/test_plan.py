"""`make plan` in a rendered service: the SQL that the next `alembic upgrade head` would run
on the configured database, from the revision it records, changing nothing. Run by psql,
that SQL brings the database to the head; a database at the head has nothing to run; one
at a revision the history lacks is refused, naming it."""

import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import URL

from tests.alembic_cli import Alembic
from tests.postgres import execute, log_rows, public_tables
from tests.rendering import SHIPPED_HEAD, render_service

BEFORE_HEAD = "9b4f7c1e0a62"


def plan(project: Path, url: URL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic_rollout", "plan"],  # What `make plan` runs.
        cwd=project,
        env=Alembic(project, url).env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def psql(url: URL, script: str) -> None:
    target = url.set(drivername="postgresql").render_as_string(hide_password=False)
    command = ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", target]
    subprocess.run(command, input=script, text=True, check=True, capture_output=True)


def test_plan_prints_what_upgrade_head_would_run_and_changes_nothing(
    tmp_path: Path, database_url: URL
) -> None:
    project = render_service(tmp_path / "service")
    alembic = Alembic(project, database_url)

    # Never migrated: the whole history, from base.
    fresh = plan(project, database_url)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "at base (no revision applied), would run\n-- 4 revision(s)" in fresh.stdout
    assert "CREATE TABLE hotels" in fresh.stdout
    assert public_tables(database_url) == set()

    alembic("upgrade", BEFORE_HEAD)
    tables = public_tables(database_url)
    planned = plan(project, database_url)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert f"at {BEFORE_HEAD}, would run\n-- 1 revision(s), {SHIPPED_HEAD}," in planned.stdout
    assert (
        "CREATE TABLE hotels" not in planned.stdout and "CREATE TABLE users" not in planned.stdout
    )
    assert "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_users_email" in planned.stdout
    assert alembic("current").startswith(BEFORE_HEAD)
    assert public_tables(database_url) == tables

    # The plan, run as it is, is the upgrade: the head, logged, and nothing left to do.
    psql(database_url, planned.stdout)
    assert alembic("current").startswith(f"{SHIPPED_HEAD} (head)")
    assert [row[:2] for row in log_rows(database_url)][-1] == (SHIPPED_HEAD, "upgrade")
    assert "No new upgrade operations detected" in alembic("check")
    at_head = plan(project, database_url)
    assert at_head.returncode == 0, at_head.stderr
    assert at_head.stdout.startswith("-- Nothing to run: ")
    assert f"is at the head, {SHIPPED_HEAD}." in at_head.stdout


def test_a_revision_the_history_lacks_is_refused_by_name(tmp_path: Path, database_url: URL) -> None:
    project = render_service(tmp_path / "service")
    Alembic(project, database_url)("upgrade", "head")
    execute(database_url, "UPDATE alembic_version SET version_num = 'abcdefabcdef'")

    refused = plan(project, database_url)

    assert refused.returncode == 1
    assert refused.stdout == ""
    named = f"make plan: {database_url.database} on .+ records revision abcdefabcdef, which "
    assert re.search(named + "this checkout's history does not have", refused.stderr)
    assert "plan from a checkout that has it" in refused.stderr
    assert "Traceback" not in refused.stderr
