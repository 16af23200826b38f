"""Grow a rendered service's migration history to N revisions, against real PostgreSQL.

Run inside the service (its settings point at an empty database):

    python grow_history.py 200

Each new revision comes from `alembic revision --autogenerate`, in one process:
a new model module (a table with a foreign key to the previous one) or a new
column on an earlier generated table, then `alembic upgrade head`.
"""

import importlib
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

# Written the way the template's example models are, so the history is
# clean for the migration lint.
MODEL = """\
from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from src.models.base import Base, IdentityKey


class Generated{index}(Base):
    __tablename__ = "generated_{index}"

    id: Mapped[IdentityKey]
    name: Mapped[str]
{parent}{columns}"""
PARENT = (
    "    parent_id: Mapped[int | None] = mapped_column(\n"
    '        ForeignKey("generated_{previous}.id"),\n'
    "    )\n"
)
COLUMN = "    extra_{number}: Mapped[int | None]\n"


def main(target: int) -> None:
    config = Config("alembic.ini")
    command.upgrade(config, "head")
    metadata = importlib.import_module("src.models.base").Base.metadata
    script = ScriptDirectory.from_config(config)
    revisions = len(list(script.walk_revisions()))
    tables: list[int] = []
    columns: dict[int, int] = {}
    for step in range(target - revisions):
        if step % 3 == 2:
            # Every third revision adds a column to the newest table.
            table = tables[-1]
            columns[table] = columns.get(table, 0) + 1
            message = f"Add extra_{columns[table]} to generated_{table}"
        else:
            table = len(tables)
            tables.append(table)
            message = f"Create table generated_{table}"
        parent = PARENT.format(previous=table - 1) if table > 0 else ""
        extra = "".join(COLUMN.format(number=n) for n in range(1, columns.get(table, 0) + 1))
        name = f"generated_{table:03d}"
        module = Path("src/models") / f"{name}.py"
        module.write_text(MODEL.format(index=table, parent=parent, columns=extra))
        if f"src.models.{name}" in sys.modules:
            # Declare the table again, with its new column, on the same metadata.
            metadata.remove(metadata.tables[f"generated_{table}"])
            importlib.reload(sys.modules[f"src.models.{name}"])
        else:
            importlib.import_module(f"src.models.{name}")
        command.revision(config, message=message, autogenerate=True)
        command.upgrade(config, "head")


if __name__ == "__main__":
    main(int(sys.argv[1]))
