"""`make stats-export [file=PATH]`: production's table sizes and column
statistics, without its data, for `make rehearse` and `make report`.

Run it with a read-only role against production (MIGRATION_DATABASE_URL,
else the settings): it reads PostgreSQL's own statistics in a READ ONLY
transaction (alembic_rollout.table_stats) and writes, per table, the row
estimate, and per column, the fraction of NULLs, the number of distinct
values and the average width. No row value is in the file; commit it, or
keep it as a CI secret. Then REHEARSAL_STATS=PATH seeds each table to its
production size, up to REHEARSAL_STATS_MAX_ROWS.

A role sees the statistics of the columns it may read: grant it SELECT on
the tables (pg_read_all_stats is not needed). Tables never analyzed have no
estimate yet: run ANALYZE on production first.
"""

from pathlib import Path

from alembic_rollout.live_reads import database_name, read_live
from alembic_rollout.revision_history import command_parser, run_command
from alembic_rollout.scratch_server import configured_settings
from alembic_rollout.service import create_direct_engine
from alembic_rollout.table_stats import export, missing_statistics, write_stats

DEFAULT_FILE = "rehearsal-stats.json"


def stats_export(path: Path) -> list[str]:
    settings = configured_settings("make stats-export")
    engine = create_direct_engine(settings)
    tables = read_live(engine, export)
    write_stats(tables, path)
    rows = sum(max(table.rows, 0) for table in tables.values())
    wrote = (
        f"Wrote the statistics of {len(tables)} table(s) of {database_name(engine)} "
        f"({rows:,} rows in all, by the planner's estimate) to {path}: sizes, "
        "NULL fractions, distinct counts and widths, no row values."
    )
    return [wrote, *missing_statistics(tables)]


def main() -> None:
    parser = command_parser("stats-export", __doc__)
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(DEFAULT_FILE),
        help=f"the file to write (default: {DEFAULT_FILE})",
    )
    arguments = parser.parse_args()
    run_command("make stats-export", lambda: stats_export(arguments.output))


if __name__ == "__main__":
    main()
