"""alembic_rollout.revision_log on a real database: a checkout from before a squash
migrates a database that ran the squash's baseline, and back again; a refusal says which
version the database ran, when, and what git says of the file."""

import subprocess
from datetime import UTC
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from alembic_rollout.revision_log import check_applied_revisions, checksum, logged_steps
from sqlalchemy import URL, Connection

from tests.git_repository import commit_all, init_repository
from tests.postgres import connect

REVISION = '''"""{message}"""

from alembic import op

revision = "{revision}"
down_revision = {down_revision!r}
{declarations}

def upgrade() -> None:
    op.execute("{sql}")


def downgrade() -> None:
    pass
'''
FIRST = REVISION.format(
    message="Hotels",
    revision="a1a1a1a1a1a1",
    down_revision=None,
    declarations="",
    sql="CREATE TABLE hotels (id int)",
)
SECOND = REVISION.format(
    message="Rooms",
    revision="b2b2b2b2b2b2",
    down_revision="a1a1a1a1a1a1",
    declarations="",
    sql="CREATE TABLE rooms (id int)",
)
# What `make squash upto=b2b2b2b2b2b2` writes: the same id, no parent, both tables.
BASELINE = REVISION.format(
    message="Baseline",
    revision="b2b2b2b2b2b2",
    down_revision=None,
    declarations=f'squashes = ("a1a1a1a1a1a1",)\nsquashed_checksum = "{checksum(SECOND)}"\n',
    sql="CREATE TABLE hotels (id int); CREATE TABLE rooms (id int)",
)
HEAD = ["b2b2b2b2b2b2"]


def history(folder: Path, *sources: str) -> ScriptDirectory:
    """A checkout's versions folder, holding exactly these revisions."""
    versions = folder / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    for old in versions.glob("*.py"):
        old.unlink()
    for source in sources:
        revision = source.split('revision = "', 1)[1][:12]
        (versions / f"{revision}.py").write_text(source)
    return ScriptDirectory(str(folder))


def check(script: ScriptDirectory, connection: Connection) -> None:
    check_applied_revisions(script, connection, HEAD)
    connection.commit()


def refusal(script: ScriptDirectory, connection: Connection) -> str:
    steps_before = logged_steps(connection)
    with pytest.raises(CommandError) as refused:
        check_applied_revisions(script, connection, HEAD)
    connection.rollback()
    assert logged_steps(connection) == steps_before
    message = str(refused.value)
    assert message.count("Refused: the database is unchanged.") == 1
    return message


def directions(connection: Connection) -> list[str]:
    return [step.direction for step in logged_steps(connection)["b2b2b2b2b2b2"]]


def test_switching_across_a_squash_and_back_needs_nothing(
    database_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="alembic_rollout.revision_log")
    with connect(database_url) as connection:
        check(history(tmp_path / "main", FIRST, SECOND), connection)
        # The squash branch's baseline holds what b2b2b2b2b2b2 did before it.
        check(history(tmp_path / "squash", BASELINE), connection)
        # main again, whose b2b2b2b2b2b2 is what the database ran first; and back.
        check(history(tmp_path / "main", FIRST, SECOND), connection)
        check(history(tmp_path / "squash", BASELINE), connection)

        assert directions(connection) == ["adopt", "squash", "squash", "squash"]
        # Each is said as it is recorded.
        said = [record.getMessage() for record in caplog.records]
        assert (
            said.count(
                "squash b2b2b2b2b2b2 recorded: its file here and the one that ran build the same "
                "schema (make squash)"
            )
            == 3
        )
        # A version that neither history has is still refused.
        edited = SECOND.replace("rooms (id int)", "rooms (id bigint)")
        message = refusal(history(tmp_path / "main", FIRST, edited), connection)
        assert f"checksum {checksum(BASELINE)[:12]}, recorded by a run across `make squash`" in (
            message
        )


def test_a_refusal_says_which_version_ran_and_what_git_says_of_the_file(
    database_url: URL, tmp_path: Path
) -> None:
    checkout = tmp_path / "service"
    with connect(database_url) as connection:
        check(history(checkout, FIRST, SECOND), connection)
        (ran,) = logged_steps(connection)["b2b2b2b2b2b2"]
        edited = SECOND.replace("rooms (id int)", "rooms (id bigint)")
        shown = f"b2b2b2b2b2b2 ({checkout}/versions/b2b2b2b2b2b2.py)"

        # Outside git (an image): the versions and the way out, no git command.
        outside = refusal(history(checkout, FIRST, edited), connection)
        when = ran.applied_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        assert f"{shown}: the database ran another version of it (checksum " in outside
        assert f"recorded by the log's first run, which adopted it, {when}, as " in outside
        assert f"this file does something else ({checksum(edited)[:12]})." in outside
        assert "git" not in outside
        assert 'make accept-revision rev=b2b2b2b2b2b2 reason="..."' in outside

        # Never committed: git has no version to show.
        subprocess.run(["git", "init", "-q"], cwd=checkout, check=True)
        untracked = refusal(history(checkout, FIRST, edited), connection)
        assert "the file is not committed, so git cannot show the version that ran" in untracked

        # Changed in the working copy: git diff shows how.
        history(checkout, FIRST, SECOND)
        init_repository(checkout)
        changed = refusal(history(checkout, FIRST, edited), connection)
        assert "this checkout changes it (`git diff -- " in changed
        assert "git log" not in changed

        # As committed: the version that ran came from elsewhere, and git diff would
        # show nothing.
        commit_all(checkout, "Rooms' ids as bigint")
        committed = refusal(history(checkout, FIRST, edited), connection)
        assert "the file is as this checkout's commit has it" in committed
        assert "(`git log --all -p -- " in committed
        assert "git diff" not in committed
