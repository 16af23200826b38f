"""Synthetic rows for every table, generated from the catalog, for `make
rehearse`.

One `INSERT ... SELECT ... FROM generate_series()` per table, parents
before children: row g of a table gets values built from g, so unique
columns stay unique; a foreign key takes the referenced table's keys in
turn; an enum column cycles through its labels; a generated row that a
check constraint refuses is left out (so such a table may get fewer
rows). A column of a type not known here is left to its default, or to
NULL; a NOT NULL one without a default stops the seeding with its name.
"""

import re
from dataclasses import dataclass, field

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from alembic_rollout.schema_catalog import USER_SCHEMAS
from alembic_rollout.table_stats import TableStats


class SeedingError(Exception):
    """A table that synthetic rows cannot fill; its message names it."""


TABLES_SQL = f"""
SELECT c.oid, c.oid::regclass::text
FROM pg_class c
WHERE c.relnamespace IN ({USER_SCHEMAS}) AND c.relkind IN ('r', 'p')
    AND NOT c.relispartition AND c.relname !~ '^alembic_version'
ORDER BY 2
"""
COLUMNS_SQL = """
SELECT a.attrelid, a.attnum, a.attname,
       format_type(a.atttypid, a.atttypmod),
       base.typname, base.typtype,
       CASE WHEN base.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4
            THEN a.atttypmod - 4 END,
       a.attnotnull, a.attidentity <> '' OR a.attgenerated <> '',
       d.adbin IS NOT NULL
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype
                                     ELSE t.oid END
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(:tables) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
# Single-column foreign keys: (table, column) -> (referenced table, column).
FOREIGN_KEYS_SQL = """
SELECT c.conrelid, c.conkey[1], c.confrelid::regclass::text, a.attname
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = c.confkey[1]
WHERE c.contype = 'f' AND c.conrelid = ANY(:tables)
    AND cardinality(c.conkey) = 1
"""

# Check constraints, with the columns they read.
CHECKS_SQL = """
SELECT conrelid, pg_get_expr(conbin, conrelid), conkey
FROM pg_constraint
WHERE contype = 'c' AND conrelid = ANY(:tables)
"""

# Values from g, the row's number (a bigint), by base type.
VALUES_BY_TYPE = {
    "int2": "(g % 32767)::smallint",
    "int4": "g::integer",
    "int8": "g",
    "numeric": "(g % 10000 + 1)::numeric",
    "float4": "(g % 10000 + 1)::real",
    "float8": "(g % 10000 + 1)::double precision",
    "bool": "g % 2 = 0",
    "date": "date '2025-01-01' + (g % 3650)::integer",
    "timestamp": "timestamp '2025-01-01' + g * interval '1 second'",
    "timestamptz": "timestamptz '2025-01-01 00:00Z' + g * interval '1 second'",
    "time": "time '00:00' + (g % 86400) * interval '1 second'",
    "interval": "g * interval '1 second'",
    "uuid": "md5(g::text)::uuid",
    "json": "json_build_object('n', g)",
    "jsonb": "jsonb_build_object('n', g)",
    "bytea": "convert_to(g::text, 'UTF8')",
}
TEXT_TYPES = {"text", "varchar", "bpchar", "citext", "name"}
# A bigint from the start: g * 7919 (the NULLs' hash) passes 2^31 at 271,179 rows.
SERIES = "generate_series(1::bigint, :rows) AS g"
ON_A_COPY = "rehearse on a copy of production (REHEARSAL_DATABASE_URL)"
# The row number in a value built here (not in a foreign key's or an enum's).
ROW_NUMBER = re.compile(r"\bg\b")


@dataclass
class Table:
    oid: int
    name: str
    columns: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)
    key_arrays: list[str] = field(default_factory=list)
    filled: set[int] = field(default_factory=set)
    checks: list[str] = field(default_factory=list)
    # Per column, by its unquoted name: whether it may be NULL, and whether
    # its value is built from the row number (so production's count of
    # distinct values can shape it).
    nullable: dict[str, bool] = field(default_factory=dict)
    from_row_number: set[str] = field(default_factory=set)

    def shape(self, stats: TableStats, rows: int) -> None:
        """Production's NULLs and distinct values, column by column."""
        for number, name in enumerate(self.nullable):
            known = stats.columns.get(name)
            if known is None:
                continue
            value = self.values[number]
            if name in self.from_row_number:
                distinct = known.distinct_values(rows)
                if distinct < rows:
                    value = ROW_NUMBER.sub(f"(1 + (g - 1) % {distinct})", value)
            if self.nullable[name] and known.null_frac > 0:
                # Spread over the rows by a multiplicative hash of g.
                share = round(known.null_frac * 10_000)
                value = (
                    f"CASE WHEN (g * 7919 + {number}) % 10000 < {share} THEN NULL ELSE {value} END"
                )
            self.values[number] = value

    def insert(self) -> str:
        """INSERT ... SELECT of the generated rows that pass the checks."""
        if not self.columns:
            return f"INSERT INTO {self.name} SELECT FROM {self.sources()}"
        named = zip(self.values, self.columns, strict=True)
        candidates = ", ".join(f"{value} AS {name}" for value, name in named)
        columns = ", ".join(self.columns)
        passing = " AND ".join(["true", *self.checks])
        return (
            f"INSERT INTO {self.name} ({columns}) SELECT {columns} FROM "
            f"(SELECT {candidates} FROM {self.sources()}) AS candidate "
            f"WHERE {passing}"
        )

    def sources(self) -> str:
        return ", ".join([SERIES, *self.key_arrays])


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def text_value(column: str, length: int | None) -> str:
    if "email" in column:
        value = "'user' || g || '@example.com'"
    else:
        label = column.replace("'", "''")
        value = f"'{label} ' || g"
    return f"right({value}, {length})" if length else value


def seeding_plan(connection: Connection) -> list[Table]:
    """Each table with the values it gets, parents before their children."""
    found = connection.execute(text(TABLES_SQL))
    tables = {oid: Table(oid, name) for oid, name in found}
    oids = list(tables)
    foreign_keys = connection.execute(text(FOREIGN_KEYS_SQL), {"tables": oids})
    references = {(table, column): to for table, column, *to in foreign_keys}
    columns = connection.execute(text(COLUMNS_SQL), {"tables": oids})
    for row in columns:
        oid, number, name, shown, base, kind, length = row[:7]
        not_null, generated, has_default = row[7:]
        table = tables[oid]
        if generated:
            continue
        if (oid, number) in references:
            parent, parent_column = references[(oid, number)]
            keys = f"keys_{len(table.key_arrays)}"
            aggregate = f"array_agg({quoted(parent_column)})"
            keys_from = f"(SELECT {aggregate} AS a FROM {parent})"
            table.key_arrays.append(f"{keys_from} AS {keys}")
            value = f"{keys}.a[1 + (g - 1) % cardinality({keys}.a)]"
            if parent != table.name:
                table.parents.add(parent)
        elif kind == "e":
            labels = f"enum_range(NULL::{shown})"
            value = f"({labels})[1 + g % cardinality({labels})]"
        elif base in TEXT_TYPES:
            value = text_value(name, length)
        elif base in VALUES_BY_TYPE:
            value = VALUES_BY_TYPE[base]
        elif has_default or not not_null:
            continue
        else:
            raise SeedingError(
                f"cannot seed {table.name}.{name}: type {shown} is NOT NULL "
                "without a default, and synthetic values of it are not known "
                f"here; {ON_A_COPY}"
            )
        if (oid, number) not in references and kind != "e":
            table.from_row_number.add(name)
        table.columns.append(quoted(name))
        table.values.append(f"({value})::{shown}")
        table.nullable[name] = not not_null
        table.filled.add(number)
    checks = connection.execute(text(CHECKS_SQL), {"tables": oids})
    for oid, expression, reads in checks:
        # A check on a column left to its default is the INSERT's to apply.
        if set(reads) <= tables[oid].filled:
            tables[oid].checks.append(f"({expression}) IS NOT FALSE")
    return parents_first(list(tables.values()))


def parents_first(tables: list[Table]) -> list[Table]:
    ordered: list[Table] = []
    placed: set[str] = set()
    pending = list(tables)
    while pending:
        ready = [table for table in pending if table.parents <= placed]
        if not ready:
            names = ", ".join(table.name for table in pending)
            cycle = f"foreign keys form a cycle between {names}"
            raise SeedingError(f"{cycle}: {ON_A_COPY}")
        for table in ready:
            ordered.append(table)
            placed.add(table.name)
            pending.remove(table)
    return ordered


@dataclass
class Seeded:
    """A table's synthetic rows: how many it got, how many were generated
    (a check constraint may refuse some), and production's count when the
    stats gave one."""

    rows: int
    generated: int
    production: int | None = None


def seed(
    connection: Connection,
    rows: int,
    stats: dict[str, TableStats] | None = None,
    max_rows: int | None = None,
) -> dict[str, Seeded]:
    """Synthetic rows in every table, analyzed: `rows` each, or with `stats`,
    each table's production count (at most `max_rows`), its NULLs and its
    distinct values."""
    seeded = {}
    for table in seeding_plan(connection):
        known = (stats or {}).get(table.name)
        if known is not None and known.rows < 0:
            known = None  # No estimate: as if the file lacked the table.
        generated = rows
        if known is not None:
            generated = min(known.rows, max_rows) if max_rows else known.rows
            table.shape(known, generated)
        try:
            inserted = connection.execute(text(table.insert()), {"rows": generated})
        except DBAPIError as error:
            cause = str(error.orig).strip().splitlines()[0]
            failed = f"cannot seed {table.name}: {cause}"
            raise SeedingError(f"{failed}; {ON_A_COPY}") from None
        production = known.rows if known is not None else None
        seeded[table.name] = Seeded(inserted.rowcount, generated, production)
        connection.execute(text(f"ANALYZE {table.name}"))
    return seeded
