"""Production's sizes without production's data: per table, the planner's row
estimate; per column, the fraction of NULLs, the number of distinct values
and the average width, as PostgreSQL's statistics hold them (pg_class,
pg_stats). No row value is read or written: pg_stats' most common values and
histograms are left out.

`make stats-export` writes them to a file (`export`); `make rehearse` and
`make report` read it (`read_stats`) when REHEARSAL_STATS names it, and seed
each table to its production size (alembic_rollout.seeding).
"""

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, text

from alembic_rollout.schema_catalog import USER_SCHEMAS

FORMAT = 1
# The tables as seeding names them, with the planner's estimate (-1 before
# the first ANALYZE or VACUUM, on PostgreSQL 14 and later).
TABLES_SQL = f"""
SELECT c.oid::regclass::text, c.reltuples::bigint
FROM pg_class c
WHERE c.relnamespace IN ({USER_SCHEMAS}) AND c.relkind IN ('r', 'p')
    AND NOT c.relispartition AND c.relname !~ '^alembic_version'
ORDER BY 1
"""
# pg_stats shows a column only to a role that may read it.
COLUMNS_SQL = f"""
SELECT c.oid::regclass::text, s.attname, s.null_frac, s.n_distinct, s.avg_width
FROM pg_stats s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relname = s.tablename AND c.relnamespace = n.oid
WHERE c.relnamespace IN ({USER_SCHEMAS}) AND c.relkind IN ('r', 'p')
    AND NOT s.inherited
ORDER BY 1, 2
"""


class StatsError(Exception):
    """A stats file that cannot be used; the message says why."""


@dataclass
class ColumnStats:
    null_frac: float
    # As pg_stats says it: a count when positive, minus a fraction of the
    # rows when negative (-1: every value distinct).
    n_distinct: float
    avg_width: int

    def distinct_values(self, rows: int) -> int:
        counted = self.n_distinct if self.n_distinct > 0 else -self.n_distinct * rows
        return max(1, min(rows, round(counted)))


@dataclass
class TableStats:
    # The planner's estimate; -1 when it has none (the table was never
    # analyzed), and seeding then gives it REHEARSAL_ROWS.
    rows: int
    columns: dict[str, ColumnStats] = field(default_factory=dict)


def missing_statistics(tables: dict[str, TableStats]) -> list[str]:
    """What an export lacks, a sentence per kind: tables with no row estimate,
    and tables with rows but no column statistics. An empty table needs none."""
    never = sorted(name for name, table in tables.items() if table.rows < 0)
    shapeless = sorted(name for name, t in tables.items() if t.rows > 0 and not t.columns)
    said = []
    if never:
        said.append(
            f"No row estimate for {', '.join(never)}: never analyzed. Run ANALYZE on "
            "them and export again; meanwhile the rehearsal gives each REHEARSAL_ROWS."
        )
    if shapeless:
        said.append(
            f"No column statistics for {', '.join(shapeless)}: not analyzed yet, or not "
            "readable by this role (it needs SELECT on them). Their sizes are in the "
            "file, and their columns get the rehearsal's usual values; run ANALYZE, or "
            "grant SELECT, and export again."
        )
    return said


def export(connection: Connection) -> dict[str, TableStats]:
    """The statistics of every table, read in a READ ONLY transaction."""
    connection.execute(text("SET TRANSACTION READ ONLY"))
    tables = {name: TableStats(int(rows)) for name, rows in connection.execute(text(TABLES_SQL))}
    for table, column, null_frac, n_distinct, width in connection.execute(text(COLUMNS_SQL)):
        if table in tables:
            tables[table].columns[column] = ColumnStats(
                float(null_frac), float(n_distinct), int(width)
            )
    return tables


def write_stats(tables: dict[str, TableStats], path: Path) -> None:
    document = {
        "format": FORMAT,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": {name: asdict(stats) for name, stats in tables.items()},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def read_stats(path: Path) -> dict[str, TableStats]:
    """The tables of a stats file, or a StatsError naming what is wrong."""
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise StatsError(f"cannot read REHEARSAL_STATS ({path}): {error.strerror}") from None
    except ValueError as error:
        raise StatsError(f"REHEARSAL_STATS ({path}) is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StatsError(
            f"REHEARSAL_STATS ({path}) is not a stats file of format {FORMAT}: "
            "write it again with `make stats-export`"
        )
    try:
        return {
            name: TableStats(
                int(table["rows"]),
                {
                    column: ColumnStats(
                        float(stats["null_frac"]),
                        float(stats["n_distinct"]),
                        int(stats["avg_width"]),
                    )
                    for column, stats in table["columns"].items()
                },
            )
            for name, table in document["tables"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StatsError(f"REHEARSAL_STATS ({path}) has a malformed entry: {error!r}") from None
