"""The README's recipes for changing what live code uses, walked through their releases.

One service with the example models (no web layer, so that a release's tests of its
code are the model tests) and its uv.lock, in git, `main` the release. The four recipes run side by
side, each release taking the next step of each:

- release 2: `hotels.location` is unmapped, retired, and given a default; `rooms.capacity`
  is added nullable and written; `hotels.name` and `rooms.price_amount` (numeric, for
  `rooms.price`, bigint) are added nullable, and the code writes both old and new;
- release 3: `hotels.location` is dropped; `capacity`, `name` and `price_amount` are
  backfilled in batches and made NOT NULL (a NOT VALID check, validated, SET NOT NULL,
  the check dropped); the code reads the new columns and still writes both;
- release 4: `hotels.title` and `rooms.price` are unmapped, retired, and let be NULL;
- release 5: they are dropped.

Every release is clean for the history check, the migration lint (its deliberate steps
declared), `alembic check`, and `make check-compat` against the release before it; the
stairway of the service's own migration tests walks the whole history at the end.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import URL

from tests.alembic_cli import Alembic
from tests.git_repository import commit_all, git, init_repository, replace_once
from tests.rendering import lock_dependencies, render_service
from tests.revision_files import Revision
from tests.service_suite import run_service_tests, service_command

pytestmark = pytest.mark.reliability
HOTELS = "src/models/hotels.py"
ROOMS = "src/models/rooms.py"
MODEL_TESTS = "tests/test_models.py"
TYPES = {"title": "sa.Text()", "name": "sa.Text()", "price": "sa.BigInteger()",
         "price_amount": "sa.Numeric(12, 2)", "capacity": "sa.BigInteger()"}  # fmt: skip
# The columns made NOT NULL in release 3, each with the check that spares SET NOT NULL its scan.
REQUIRED = {"ck_rooms_capacity_not_null": ("rooms", "capacity"),
            "ck_hotels_name_not_null": ("hotels", "name"),
            "ck_rooms_price_amount_not_null": ("rooms", "price_amount")}  # fmt: skip


def nullable(table: str, column: str, allowed: bool) -> str:
    type_ = TYPES[column]
    return f'op.alter_column("{table}", "{column}", existing_type={type_}, nullable={allowed})'


def add_check(name: str, table: str, column: str) -> str:
    condition = f"{column} IS NOT NULL"
    return f'op.create_check_constraint(op.f("{name}"), "{table}", "{condition}", postgresql_not_valid=True)'  # noqa: E501


def validate_check(name: str, table: str, column: str) -> str:
    return f'op.execute("ALTER TABLE {table} VALIDATE CONSTRAINT {name}")'


def drop_check(name: str, table: str, column: str) -> str:
    return f'op.drop_constraint(op.f("{name}"), "{table}", type_="check")'


def retired(table: str, column: str) -> tuple[str, str, str]:
    """The edit of a model that declares `column` retired."""
    table_name = f'    __tablename__ = "{table}"\n'
    info = f'    __table_args__ = ({{"info": {{"retired_columns": ("{column}",)}}}},)\n'
    return (HOTELS if table == "hotels" else ROOMS, table_name, table_name + info)


def unretired(table: str, column: str) -> tuple[str, str, str]:
    file, table_name, with_info = retired(table, column)
    return (file, with_info.removeprefix(table_name), "")


def writes_too(written: str, copied: str, type_: str, conversion: str) -> str:
    """A validator by which setting `written` sets `copied` as well."""
    return (
        f'    @validates("{written}")\n'
        f"    def write_{copied}_too(self, key: str, {written}: {type_}) -> {type_}:\n"
        f"        self.{copied} = {conversion}\n"
        f"        return {written}\n"
    )


TITLE_WRITES_NAME = writes_too("title", "name", "str", "title")
NAME_WRITES_TITLE = writes_too("name", "title", "str", "name")
PRICE_WRITES_AMOUNT = writes_too("price", "price_amount", "int", "Decimal(price)")
AMOUNT_WRITES_PRICE = writes_too("price_amount", "price", "Decimal", "round(price_amount)")
HOTEL_RELATIONSHIP = "        passive_deletes=True,\n    )\n"
ROOM_RELATIONSHIP = '    hotel: Mapped["Hotel"] = relationship(back_populates="rooms")\n'

EXPAND = [
    Revision(
        "a1a1a1a1a1a1",
        "Give hotels.location a default",
        ['op.alter_column("hotels", "location", server_default="")'],
        ['op.alter_column("hotels", "location", server_default=None)'],
    ),
    Revision(
        "a2a2a2a2a2a2",
        "Add rooms.capacity, hotels.name, rooms.price_amount",
        [
            'op.add_column("rooms", sa.Column("capacity", sa.BigInteger()))',
            'op.add_column("hotels", sa.Column("name", sa.Text()))',
            'op.add_column("rooms", sa.Column("price_amount", sa.Numeric(12, 2)))',
        ],
        [
            'op.drop_column("rooms", "price_amount")',
            'op.drop_column("hotels", "name")',
            'op.drop_column("rooms", "capacity")',
        ],
        down_revision="a1a1a1a1a1a1",
    ),
]
EXPAND_CODE = [
    (HOTELS, "relationship\n", "relationship, validates\n"),
    retired("hotels", "location"),
    (HOTELS, "    location: Mapped[str]\n", "    name: Mapped[str | None]\n"),
    (HOTELS, HOTEL_RELATIONSHIP, f"{HOTEL_RELATIONSHIP}\n{TITLE_WRITES_NAME}"),
    (ROOMS, "from typing", "from decimal import Decimal\nfrom typing"),
    (ROOMS, "import ForeignKey\n", "import ForeignKey, Numeric\n"),
    (ROOMS, "relationship\n", "relationship, validates\n"),
    (
        ROOMS,
        "    price: Mapped[int]\n    quantity: Mapped[int]\n",
        "    price: Mapped[int]\n"
        "    price_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))\n"
        "    quantity: Mapped[int]\n"
        "    capacity: Mapped[int | None]\n",
    ),
    (ROOMS, ROOM_RELATIONSHIP, f"{ROOM_RELATIONSHIP}\n{PRICE_WRITES_AMOUNT}"),
    (MODEL_TESTS, ', location="Sochi"', ""),
    (MODEL_TESTS, "quantity=3)", "quantity=3, capacity=2)"),
]

SWITCH = [
    Revision(
        "b1b1b1b1b1b1",
        "Drop hotels.location",
        ['op.drop_column("hotels", "location")'],
        [
            'op.add_column("hotels", sa.Column("location", sa.Text(), server_default="",'
            " nullable=False))"
        ],
        down_revision="a2a2a2a2a2a2",
        contract_step={"ban-drop-column": "release 2 neither maps nor writes it"},
    ),
    Revision(
        "b2b2b2b2b2b2",
        "Backfill capacity, name and price_amount",
        [
            'backfill("rooms", "capacity = 2", pending="capacity IS NULL")',
            'backfill("hotels", "name = title", pending="name IS NULL")',
            'backfill("rooms", "price_amount = price", pending="price_amount IS NULL")',
            *(add_check(name, *column) for name, column in REQUIRED.items()),
        ],
        [drop_check(name, *column) for name, column in REQUIRED.items()],
        down_revision="b1b1b1b1b1b1",
        imports=("from src.revision_operations import backfill",),
    ),
    Revision(
        "b3b3b3b3b3b3",
        "Make capacity, name and price_amount NOT NULL",
        [
            *(validate_check(name, *column) for name, column in REQUIRED.items()),
            *(nullable(*column, allowed=False) for column in REQUIRED.values()),
            *(drop_check(name, *column) for name, column in REQUIRED.items()),
        ],
        [
            *(nullable(*column, allowed=True) for column in REQUIRED.values()),
            *(add_check(name, *column) for name, column in REQUIRED.items()),
        ],
        down_revision="b2b2b2b2b2b2",
        contract_step={"ban-drop-constraint": "each check only spared SET NOT NULL its scan"},
    ),
]
SWITCH_CODE = [
    unretired("hotels", "location"),
    (HOTELS, "    name: Mapped[str | None]\n", "    name: Mapped[str]\n"),
    (HOTELS, TITLE_WRITES_NAME, NAME_WRITES_TITLE),
    (ROOMS, "Mapped[Decimal | None]", "Mapped[Decimal]"),
    (ROOMS, "    capacity: Mapped[int | None]\n", "    capacity: Mapped[int]\n"),
    (ROOMS, PRICE_WRITES_AMOUNT, AMOUNT_WRITES_PRICE),
    (MODEL_TESTS, "AsyncIterator\n", "AsyncIterator\nfrom decimal import Decimal\n"),
    (MODEL_TESTS, 'Hotel(title="Sea View")', 'Hotel(name="Sea View")'),
    (MODEL_TESTS, "price=5000,", 'price_amount=Decimal("5000.00"),'),
    (MODEL_TESTS, "(room.title, room.price)", "(room.title, room.price_amount)"),
]

RETIRE = [
    Revision(
        "c1c1c1c1c1c1",
        "Let hotels.title and rooms.price be NULL",
        [nullable("hotels", "title", True), nullable("rooms", "price", True)],
        [nullable("rooms", "price", False), nullable("hotels", "title", False)],
        down_revision="b3b3b3b3b3b3",
        contract_step={"ban-drop-not-null": "release 3 reads name and price_amount"},
    ),
]
RETIRE_CODE = [
    (HOTELS, "relationship, validates\n", "relationship\n"),
    (ROOMS, "relationship, validates\n", "relationship\n"),
    retired("hotels", "title"),
    (HOTELS, "    title: Mapped[str]\n", ""),
    (HOTELS, f"\n{NAME_WRITES_TITLE}", ""),
    retired("rooms", "price"),
    (ROOMS, "    price: Mapped[int]\n", ""),
    (ROOMS, f"\n{AMOUNT_WRITES_PRICE}", ""),
]

CONTRACT = [
    Revision(
        "d1d1d1d1d1d1",
        "Drop hotels.title and rooms.price",
        ['op.drop_column("hotels", "title")', 'op.drop_column("rooms", "price")'],
        [
            'op.add_column("rooms", sa.Column("price", sa.BigInteger()))',
            'op.add_column("hotels", sa.Column("title", sa.Text()))',
        ],
        down_revision="c1c1c1c1c1c1",
        contract_step={"ban-drop-column": "release 4 neither maps nor writes them"},
    ),
]
CONTRACT_CODE = [unretired("hotels", "title"), unretired("rooms", "price")]

# Each release: its branch, its revisions, and its edits of the code (file, old, new).
RELEASES = [
    ("expand", EXPAND, EXPAND_CODE),
    ("switch", SWITCH, SWITCH_CODE),
    ("retire", RETIRE, RETIRE_CODE),
    ("contract", CONTRACT, CONTRACT_CODE),
]


def passes(project: Path, server_url: URL, *command: str) -> str:
    test_database = server_url.render_as_string(hide_password=False)
    result = service_command(project, *command, TEST_DATABASE_URL=test_database)
    assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_the_recipes_walk_through_their_releases(
    tmp_path: Path, database_url: URL, postgres_server_url: URL
) -> None:
    project = render_service(tmp_path / "service")
    lock_dependencies(project)
    init_repository(project)
    alembic = Alembic(project, database_url)

    for branch, revisions, edits in RELEASES:
        git(project, "checkout", "-q", "-b", branch)
        for revision in revisions:
            revision.write(project, branch)
        passes(project, postgres_server_url, "record-head")
        for file, old, new in edits:
            replace_once(project / file, old, new)
        commit_all(project, branch)

        passes(project, postgres_server_url, "check-history")
        ruff = [sys.executable, "-m", "ruff", "check", "."]
        linted_code = subprocess.run(ruff, cwd=project, capture_output=True, text=True)
        assert linted_code.returncode == 0, f"{branch}:\n{linted_code.stdout}"
        linted = passes(project, postgres_server_url, "lint-migrations")
        for revision in revisions:
            for rule in revision.contract_step or {}:
                assert f"declared contract step, {rule}" in linted
        checked = alembic.batch("upgrade head", "check")[1]
        assert "No new upgrade operations detected" in checked, f"{branch}:\n{checked}"
        # The release before this one (`main`) runs its tests on this schema.
        compat = passes(project, postgres_server_url, "check-compat", "--base", "main")
        assert "Compatible: " in compat

        git(project, "checkout", "-q", "main")
        git(project, "merge", "-q", "--ff-only", branch)

    # The stairway (each revision down and up again) and the model tests, on the end state.
    env = {**alembic.env, "TEST_DATABASE_URL": postgres_server_url.render_as_string(False)}
    assert set(run_service_tests(project, env)) == {"passed"}
