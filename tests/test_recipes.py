"""The README's recipes for changing what live code uses, walked through their releases.

"Drop a column": one service with the example models (no web layer, so that the
release's tests of its code are the model tests), in git, `main` the release.
Release 2 stops mapping `hotels.location` and declares it retired, with a revision
that lets it be NULL; release 3 drops it, a declared contract step. Every step is
clean for the migration lint, `alembic check`, `make check-compat` against the
release before it, and the stairway of the service's own migration tests.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import URL

from tests.alembic_cli import Alembic
from tests.git_repository import commit_all, git, init_repository, replace_once
from tests.rendering import SHIPPED_HEAD, render_service
from tests.service_suite import run_service_tests

pytestmark = pytest.mark.reliability
RETIRE_LOCATION = f'''"""Let hotels.location be NULL: release 2 no longer writes it"""

import sqlalchemy as sa
from alembic import op

revision = "a1a1a1a1a1a1"
down_revision = "{SHIPPED_HEAD}"
branch_labels = None
depends_on = None
contract_step = {{
    "ban-drop-not-null": "the serving release writes location; this one does not"
}}


def upgrade() -> None:
    op.alter_column("hotels", "location", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    op.alter_column("hotels", "location", existing_type=sa.Text(), nullable=False)
'''
DROP_LOCATION = '''"""Drop hotels.location, retired by release 2"""

import sqlalchemy as sa
from alembic import op

revision = "b2b2b2b2b2b2"
down_revision = "a1a1a1a1a1a1"
branch_labels = None
depends_on = None
contract_step = {"ban-drop-column": "release 2 neither maps nor writes it"}


def upgrade() -> None:
    op.drop_column("hotels", "location")


def downgrade() -> None:
    op.add_column("hotels", sa.Column("location", sa.Text(), nullable=True))
'''
MAPPED = "    location: Mapped[str]\n"
RETIRED = '    __table_args__ = {"info": {"retired_columns": ("location",)}}\n'


def passes(project: Path, server_url: URL, *command: str) -> str:
    env = {
        **os.environ,
        "TEST_DATABASE_URL": server_url.render_as_string(hide_password=False),
    }
    result = subprocess.run(
        [sys.executable, "-m", "scripts", *command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
    return result.stdout


def release_is_clean(project: Path, alembic: Alembic, server_url: URL, declared: str) -> None:
    """The lint passes, listing the declared rule; the models match the migrated
    database; the code of the release before (`main`) runs on the new schema."""
    linted = passes(project, server_url, "lint-migrations")
    assert f"declared contract step, {declared}" in linted
    assert "No new upgrade operations detected" in alembic.batch("upgrade head", "check")[1]
    assert "Compatible: " in passes(project, server_url, "check-compat", "--base", "main")


def test_a_column_is_dropped_in_two_releases(
    tmp_path: Path, database_url: URL, postgres_server_url: URL
) -> None:
    project = render_service(tmp_path / "service")
    init_repository(project)
    alembic = Alembic(project, database_url)
    (versions,) = project.rglob("versions")
    hotels = project / "src" / "models" / "hotels.py"

    # Release 2: the code no longer maps the column, which stays, and may be NULL.
    git(project, "checkout", "-q", "-b", "retire-location")
    replace_once(hotels, MAPPED, "")
    table_name = '    __tablename__ = "hotels"\n'
    replace_once(hotels, table_name, table_name + RETIRED)
    replace_once(project / "tests" / "test_models.py", ', location="Sochi"', "")
    (versions / "a1a1a1a1a1a1_retire_hotels_location.py").write_text(RETIRE_LOCATION)
    commit_all(project, "Retire hotels.location")
    release_is_clean(project, alembic, postgres_server_url, declared="ban-drop-not-null")
    git(project, "checkout", "-q", "main")
    git(project, "merge", "-q", "--ff-only", "retire-location")

    # Release 3: the contract step drops it; the declaration of the retired column goes.
    git(project, "checkout", "-q", "-b", "drop-location")
    replace_once(hotels, RETIRED, "")
    (versions / "b2b2b2b2b2b2_drop_hotels_location.py").write_text(DROP_LOCATION)
    commit_all(project, "Drop hotels.location")
    release_is_clean(project, alembic, postgres_server_url, declared="ban-drop-column")

    # The stairway (each revision down and up again) and the model tests, on the end state.
    env = {**alembic.env, "TEST_DATABASE_URL": postgres_server_url.render_as_string(False)}
    assert set(run_service_tests(project, env)) == {"passed"}
