"""`make plan`: the SQL that the next `alembic upgrade head` would run on the
configured database (MIGRATION_DATABASE_URL, else DATABASE_URL), from the
revision that database records. Nothing is changed.

The recorded revision is read in a transaction that is rolled back (as
`make drift` reads it); the SQL, on stdout, is Alembic's offline script
from that revision to the head, written by this service's env.py: the
migration lock, the timeouts and the revision log's rows included. Online,
`alembic upgrade` runs the same statements, and may retry a lock wait,
which a script cannot. A database at a revision this history does not have
is refused, naming it.
"""

import sys

from alembic import command
from alembic.util import CommandError

from alembic_rollout.live_reads import (
    database_name,
    read_live,
    recorded_heads,
    refuse_unknown_heads,
)
from alembic_rollout.revision_history import (
    UNREACHABLE,
    HistoryError,
    alembic_config,
    command_parser,
    new_revisions,
    script_directory,
    unreachable,
)
from alembic_rollout.scratch_server import configured_settings
from alembic_rollout.service import ServiceError, create_direct_engine


def plan() -> None:
    settings = configured_settings("make plan")
    config = alembic_config()
    scripts = script_directory(config)
    engine = create_direct_engine(settings)
    database = database_name(engine)
    heads = read_live(engine, recorded_heads) or ()
    refuse_unknown_heads(scripts, heads, database, "plan from a checkout that has it")
    if len(heads) > 1:
        raise HistoryError(
            f"{database} records {len(heads)} heads ({', '.join(heads)}); a plan "
            "starts from one revision: upgrade each branch to the merge first"
        )
    pending = new_revisions(scripts, list(heads))
    at = heads[0] if heads else "base (no revision applied)"
    if not pending:
        print(f"-- Nothing to run: {database} is at the head, {at}.")
        return
    ids = ", ".join(script.revision for script in pending)
    print(f"-- `alembic upgrade head` on {database}, at {at}, would run")
    print(f"-- {len(pending)} revision(s), {ids}, as this script does:\n", flush=True)
    start = f"{heads[0]}:" if heads else ""
    command.upgrade(config, f"{start}head", sql=True)


def main() -> None:
    command_parser("plan", __doc__).parse_args()
    try:
        plan()
    except (HistoryError, ServiceError) as error:
        sys.exit(f"make plan: {error}")
    except UNREACHABLE as error:
        sys.exit(f"make plan: {unreachable(error)}")
    except CommandError as error:
        sys.exit(f"make plan: {error}")


if __name__ == "__main__":
    main()
