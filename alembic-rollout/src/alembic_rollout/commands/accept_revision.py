"""`make accept-revision rev=REV reason="..."` (`alembic-rollout
accept-revision REV --reason ...`): record in the configured database's
revision log that an applied revision was edited on purpose, with the
reason (Flyway's repair). Runs refuse a database whose applied revisions
were edited (alembic_rollout.revision_log); after this, that one
revision's new text is what the database is checked against.

Run it once per database that ran the old text, after fixing that
database by hand to match the new one.
"""

import argparse
import asyncio

from alembic.util import CommandError
from sqlalchemy import Connection

from alembic_rollout.revision_history import (
    HistoryError,
    run_command,
    script_directory,
)
from alembic_rollout.revision_log import accept_revision
from alembic_rollout.scratch_server import configured_settings, run
from alembic_rollout.service import create_direct_engine


def accept() -> list[str]:
    parser = argparse.ArgumentParser(
        prog="alembic-rollout accept-revision",
    )
    parser.add_argument("revision", help="the applied, edited revision")
    parser.add_argument("--reason", required=True, help="why it is safe")
    arguments = parser.parse_args()
    settings = configured_settings("make accept-revision")
    engine = create_direct_engine(settings)

    def record(connection: Connection) -> str:
        return accept_revision(
            script_directory(),
            connection,
            arguments.revision,
            arguments.reason,
        )

    try:
        accepted = run(engine, record)
    except CommandError as error:
        raise HistoryError(str(error)) from None
    finally:
        asyncio.run(engine.dispose())
    database = engine.url.database
    return [
        f"Accepted {accepted} as it is now, in {database}'s revision log.",
        "Run this on every other database that ran it.",
    ]


if __name__ == "__main__":
    run_command("make accept-revision", accept)
