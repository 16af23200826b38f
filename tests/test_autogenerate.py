"""Autogenerate on a rendered service needs no hand edits: PostgreSQL enum types
and values, no empty revisions, and pytest-alembic's own tests, on real PostgreSQL.

One service per driver walks a team's day 2: a role added to the shipped enum,
then a new model with an enum type of its own, then a role removed.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError

from tests.alembic_cli import Alembic
from tests.postgres import connect, execute
from tests.rendering import render_service
from tests.service_suite import (
    PYTEST_ALEMBIC_BUILT_IN_COUNT,
    PYTEST_ALEMBIC_BUILT_INS,
    run_service_tests,
)

# Each driver once; the second also moves every path that module discovery
# and pytest-alembic's model check depend on.
ANSWER_SETS = [
    {"db_driver": "asyncpg"},
    {
        "db_driver": "psycopg",
        "code_dir": "app",
        "migrations_in_code_dir": False,
        "file_template": "plain",
        "formatter": "ruff",
    },
]
BOOKINGS_WITH_STATUS = """\
import enum

from sqlalchemy import Enum
from sqlalchemy.orm import Mapped, mapped_column

from {code_dir}.models.base import Base, IdentityKey


class BookingStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"


class Booking(Base):
    __tablename__ = "bookings"

    id: Mapped[IdentityKey]
    status: Mapped[BookingStatus] = mapped_column(
        Enum(
            BookingStatus,
            name="booking_status",
            values_callable=lambda statuses: [status.value for status in statuses],
        ),
    )
"""
INSERT_MANAGER = (
    "INSERT INTO users (email, hashed_password, role) VALUES ('m@example.com', 'x', 'manager')"
)


def answer_id(answers: dict[str, Any]) -> str:
    return str(answers["db_driver"])


@pytest.mark.parametrize("answers", ANSWER_SETS, ids=answer_id)
def test_enums_and_empty_revisions_need_no_hand_edits(
    answers: dict[str, Any],
    tmp_path: Path,
    database_url: URL,
    password_role_server_url: URL,
) -> None:
    project = render_service(tmp_path / "service", **answers)
    code_dir = project / answers.get("code_dir", "src")
    (versions,) = project.rglob("versions")
    alembic = Alembic(project, database_url)

    # Nothing changed: no file, one line. A hand-written revision still is one.
    shipped = set(versions.glob("*.py"))
    _, nothing, _ = alembic.batch(
        "upgrade head", "revision --autogenerate -m Nothing", "revision -m Handwritten"
    )
    assert nothing.strip() == "No changes detected; no revision written."
    (handwritten,) = set(versions.glob("*.py")) - shipped
    assert handwritten.name.endswith("_handwritten.py")
    handwritten.unlink()

    # A value added to the Python enum is drift, and is added in place.
    add_to_python_enum(code_dir / "models" / "users.py", 'ADMIN = "admin"', 'MANAGER = "manager"')
    drift = alembic.run("check")
    assert drift.returncode != 0
    assert "user_role" in drift.stdout and "'manager'" in drift.stdout
    users_file = relfilenode(database_url, "users")
    _, offline, _, check = alembic.batch(
        "revision --autogenerate -m Add_manager_role", "upgrade head --sql", "upgrade head", "check"
    )
    (add_manager,) = versions.glob("*add_manager_role.py")
    add_value = "ALTER TYPE user_role ADD VALUE 'manager' AFTER 'admin'"
    assert f'op.execute("{add_value}")' in add_manager.read_text()
    assert add_value in offline
    assert "No new upgrade operations detected" in check
    execute(database_url, INSERT_MANAGER)
    assert relfilenode(database_url, "users") == users_file

    # Its downgrade removes it again, and refuses while a row holds it.
    held = alembic.run("downgrade", "-1")
    assert held.returncode != 0
    assert "rolled back; the database is unchanged" in held.stdout
    assert 'invalid input value for enum user_role: "manager"' in held.stdout
    execute(database_url, "DELETE FROM users")
    alembic("downgrade", "-1")
    with pytest.raises(DBAPIError, match="invalid input value for enum user_role"):
        execute(database_url, INSERT_MANAGER)

    # A new model with a new enum type: created before its table, dropped after it.
    (code_dir / "models" / "bookings.py").write_text(
        BOOKINGS_WITH_STATUS.format(code_dir=code_dir.name)
    )
    alembic.batch("upgrade head", "revision --autogenerate -m Add_bookings")
    (add_bookings,) = versions.glob("*add_bookings.py")
    upgrade, downgrade = add_bookings.read_text().split("def downgrade")
    assert upgrade.index("booking_status") < upgrade.index("create_table")
    assert "drop(op.get_bind())" in downgrade

    # The service's own tests (stairway, downgrade to base leaving no type, the
    # lint of every revision), as a role whose password has every character that
    # breaks a URL or Alembic's config parser. With asyncpg, pytest-alembic's
    # built-ins too, experimental ones included (all_models_register_on_metadata
    # runs Alembic in a subprocess of its own with the URL it is given); the psycopg
    # services of test_service.py run them.
    server_url = password_role_server_url.render_as_string(hide_password=False)
    built_ins = PYTEST_ALEMBIC_BUILT_INS if answers["db_driver"] == "asyncpg" else []
    counts = run_service_tests(project, {**os.environ, "TEST_DATABASE_URL": server_url}, *built_ins)
    assert counts == {"passed": 8 + (PYTEST_ALEMBIC_BUILT_IN_COUNT if built_ins else 0)}

    # A removed value swaps the type, which rewrites the table: the lint says so.
    users = code_dir / "models" / "users.py"
    users.write_text(users.read_text().replace('    MANAGER = "manager"\n', ""))
    alembic.batch("upgrade head", "revision --autogenerate -m Remove_manager_role")
    (remove_manager,) = versions.glob("*remove_manager_role.py")
    lint = subprocess.run(
        [sys.executable, "-m", "scripts", "lint-migrations", str(remove_manager)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lint.returncode == 1
    assert f"{remove_manager.name}: changing-column-type" in lint.stdout


def add_to_python_enum(module: Path, after: str, member: str) -> None:
    source = module.read_text()
    assert after in source
    module.write_text(source.replace(f"    {after}\n", f"    {after}\n    {member}\n"))


def relfilenode(url: URL, table: str) -> int:
    with connect(url) as connection:
        filenode = connection.scalar(text("SELECT pg_relation_filenode(:t)"), {"t": table})
    assert isinstance(filenode, int)
    return filenode
