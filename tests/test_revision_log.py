"""The revision log: `alembic_version_log`, one row per applied step, and runs refused
when a revision already applied has been edited since.

One service with the example models (no web layer), one database. The log's
adoption of a database that an earlier release migrated is checked for every
release by tests/test_update.py.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.alembic_cli import Alembic
from tests.git_repository import git, init_monorepo
from tests.postgres import connect, create_database, log_rows
from tests.rendering import SHIPPED_HEAD, render_service
from tests.service_suite import service_command
from tests.serving import free_port

pytestmark = pytest.mark.reliability
SHIPPED = ["c3a1f9e2b7d4", "5e8d2a6b1f03", "9b4f7c1e0a62", SHIPPED_HEAD]
HOTELS_REVISION = "c3a1f9e2b7d4"
CHECKSUM = re.compile(r"^[0-9a-f]{64}$")


def database_version(url: URL) -> list[str]:
    with connect(url) as connection:
        return list(connection.scalars(text("SELECT version_num FROM alembic_version")))


def scripts_command(project: Path, url: URL, *command: str) -> subprocess.CompletedProcess[str]:
    database = url.render_as_string(hide_password=False)
    return service_command(project, *command, timeout=120, DATABASE_URL=database)


def test_each_step_is_logged_and_an_edited_applied_revision_is_refused(
    tmp_path: Path, database_url: URL, postgres_server_url: URL
) -> None:
    # In services/hotels/ of a repository, its release tagged v1.
    project = render_service(tmp_path / "services" / "hotels")
    init_monorepo(project)
    alembic = Alembic(project, database_url)
    (versions,) = project.rglob("versions")

    alembic("upgrade", "head")
    upgraded = log_rows(database_url)
    assert [(revision, direction) for revision, direction, *_ in upgraded] == [
        (revision, "upgrade") for revision in SHIPPED
    ]
    assert all(CHECKSUM.match(checksum) for _, _, checksum, _ in upgraded)
    with connect(database_url) as connection:
        who = connection.execute(
            text("SELECT applied_by, duration_ms FROM alembic_version_log")
        ).all()
    assert all(user == database_url.username and ms >= 0 for user, ms in who)

    # Another layout and a comment in every revision change no checksum: a
    # downgrade and an upgrade run, and each adds its row.
    subprocess.run([sys.executable, "-m", "black", "-q", "-l", "120", str(versions)], check=True)
    for revision in versions.glob("*.py"):
        revision.write_text("# Reviewed.\n" + revision.read_text())
    alembic.batch("downgrade -1", "upgrade head", "downgrade -1")
    released = scripts_command(project, database_url, "check-released", "--base", "v1")
    assert released.returncode == 0, released.stderr
    assert "the 4 revisions of v1 are unchanged" in released.stdout
    assert log_rows(database_url)[len(upgraded) :] == [
        (SHIPPED_HEAD, "downgrade", upgraded[-1][2], None),
        (SHIPPED_HEAD, "upgrade", upgraded[-1][2], None),
        (SHIPPED_HEAD, "downgrade", upgraded[-1][2], None),
    ]

    # An applied revision made to do something else is refused, with the run that
    # had a revision to apply: the database and its log stay as they were.
    (hotels,) = versions.glob(f"*{HOTELS_REVISION}*.py")
    hotels_text = hotels.read_text()
    edited = hotels_text.replace(
        'sa.Column("title", sa.Text(), nullable=False)',
        'sa.Column("title", sa.Text(), nullable=True)',
    )
    assert edited != hotels_text
    hotels.write_text(edited)
    # CI's check of the branch names it first.
    released = scripts_command(project, database_url, "check-released", "--base", "v1")
    assert released.returncode == 1
    assert f"  {HOTELS_REVISION} ({hotels.relative_to(project)}): edited" in released.stderr
    version_before, log_before = database_version(database_url), log_rows(database_url)
    refused = alembic.run("upgrade", "head")
    assert refused.returncode != 0
    assert f"{HOTELS_REVISION} ({hotels.relative_to(project)})" in refused.stdout
    assert refused.stdout.count("the database is unchanged") == 1
    assert f"this checkout changes it (`git diff -- {hotels.relative_to(project)}`)" in (
        refused.stdout
    )
    assert f'make accept-revision rev={HOTELS_REVISION} reason="..."' in refused.stdout
    assert database_version(database_url) == version_before
    assert log_rows(database_url) == log_before

    # The deliberate edit, accepted with its reason, lets the runs go on.
    no_reason = scripts_command(project, database_url, "accept-revision", HOTELS_REVISION)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    reason = "title made nullable by hand everywhere"
    accepted = scripts_command(
        project, database_url, "accept-revision", HOTELS_REVISION, "--reason", reason
    )
    assert accepted.returncode == 0, accepted.stderr
    alembic("upgrade", "head")
    accept_row, upgrade_row = log_rows(database_url)[len(log_before) :]
    assert accept_row[::3] == (HOTELS_REVISION, reason) and accept_row[1] == "accept"
    assert upgrade_row[:2] == (SHIPPED_HEAD, "upgrade")

    # A revision whose file does what the log recorded has no edit to accept.
    unedited = scripts_command(
        project, database_url, "accept-revision", SHIPPED[1], "--reason", reason
    )
    assert unedited.returncode == 1
    assert f"{SHIPPED[1]} is as the revision log has it: no edit" in unedited.stderr

    shown = scripts_command(project, database_url, "revision-log")
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"{HOTELS_REVISION}\s+accept\s+.*{reason}", shown.stdout)
    assert len(shown.stdout.splitlines()) == 1 + len(log_rows(database_url))

    # An `alembic upgrade --sql` script writes the same rows, on a database of its own.
    script = alembic("upgrade", "head", "--sql")
    scripted_url = create_database(postgres_server_url, f"{database_url.database}_script")
    psql_url = scripted_url.set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", psql_url],
        input=script,
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert [row[:2] for row in log_rows(scripted_url)] == [
        (revision, "upgrade") for revision in SHIPPED
    ]

    # A released revision deleted is named too.
    (email,) = versions.glob(f"*{SHIPPED_HEAD}*.py")
    email.unlink()
    released = scripts_command(project, database_url, "check-released", "--base", "v1")
    assert released.returncode == 1
    assert f"  {SHIPPED_HEAD} ({email.relative_to(project)}): deleted" in released.stderr
    # One from the middle, after which the history no longer loads: named as well.
    (users,) = versions.glob(f"*{SHIPPED[2]}*.py")
    users.unlink()
    released = scripts_command(project, database_url, "check-released", "--base", "v1")
    assert released.returncode == 1 and "Traceback" not in released.stderr, released.stderr
    assert f"  {SHIPPED[2]} ({users.relative_to(project)}): deleted" in released.stderr
    # A ref of the repository without the service is no pass.
    empty_tree = git(project, "hash-object", "-t", "tree", "/dev/null").strip()
    without_service = git(project, "commit-tree", empty_tree, "-m", "Before the service")
    git(project, "tag", "v0", without_service.strip())
    released = scripts_command(project, database_url, "check-released", "--base", "v0")
    assert released.returncode == 1
    assert "v0 has no services/hotels/src/migrations/versions" in released.stderr

    # Outside any git repository, that is what is said first.
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    shutil.copytree(project, outside)
    for base in ([], ["--base", "main"]):
        released = service_command(
            outside, "check-released", *base, GIT_CEILING_DIRECTORIES=str(tmp_path.parent)
        )
        assert released.returncode == 1, released.stderr
        assert f"{outside} is not in a git repository" in released.stderr

    # A database that cannot be reached is one line, not a traceback.
    closed = URL.create("postgresql", "postgres", host="127.0.0.1", port=free_port())
    unreachable = scripts_command(project, closed, "revision-log")
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert unreachable.stderr.startswith("make revision-log: PostgreSQL: "), unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr
