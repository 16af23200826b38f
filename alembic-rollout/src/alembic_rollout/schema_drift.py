"""How a live database differs from what its history builds: each difference
in words, grouped by table, with the SQL that reproduces it (to turn a
deliberate hotfix into a revision), and the differences a team declared on
purpose set apart.

The comparison is of schema_objects.py's objects, by kind, table and name.
"""

import fnmatch
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.dialects import postgresql

from alembic_rollout.schema_objects import SchemaObject

# The file a team lists its deliberate differences in, at the service's root.
EXCEPTIONS_FILE = "drift-exceptions.toml"
ENUM_VALUE = re.compile(r"'((?:[^']|'')*)'")
DROP = {
    "table": "DROP TABLE {name};",
    "enum": "DROP TYPE {name};",
    "sequence": "DROP SEQUENCE {name};",
    "view": "DROP VIEW {name};",
    "function": "DROP FUNCTION {name};",
    "extension": "DROP EXTENSION {name};",
    "index": "DROP INDEX {name};",
}


class ExceptionsError(Exception):
    """drift-exceptions.toml cannot be read as documented."""


@dataclass(frozen=True)
class Declared:
    pattern: str
    reason: str


@dataclass
class Difference:
    group: str  # The table it concerns, or "" for schema-level objects.
    label: str  # "index ix_hotels_title"
    words: str
    sql: list[str]
    declared: Declared | None = None


IDENTIFIERS = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]


def quoted(name: str) -> str:
    return str(IDENTIFIERS.quote(name))


def load_exceptions(root: Path) -> list[Declared]:
    """The declared differences: `[[declared]]` tables with `object` (a
    label, `*` and `?` allowed) and `reason`. None when there is no file."""
    path = root / EXCEPTIONS_FILE
    if not path.exists():
        return []
    try:
        content = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ExceptionsError(f"{EXCEPTIONS_FILE} is not valid TOML: {error}") from None
    entries = content.get("declared", [])
    unknown = sorted(set(content) - {"declared"})
    if unknown or not isinstance(entries, list):
        found = ", ".join(unknown) or "[declared] (a single table)"
        raise ExceptionsError(
            f"{EXCEPTIONS_FILE} holds {found}; it lists each object in a table of its "
            'own: [[declared]], with object = "..." and reason = "..."'
        )
    declared = []
    for number, entry in enumerate(entries, start=1):
        pattern, reason = entry.get("object"), entry.get("reason")
        if not (isinstance(pattern, str) and isinstance(reason, str) and reason.strip()):
            raise ExceptionsError(
                f"{EXCEPTIONS_FILE}: [[declared]] number {number} needs an object "
                '(object = "index ix_hotels_title") and a reason (reason = "...")'
            )
        declared.append(Declared(pattern, reason.strip()))
    return declared


def compare(
    live: dict[tuple[str, str, str], SchemaObject],
    history: dict[tuple[str, str, str], SchemaObject],
    declared: Iterable[Declared] = (),
) -> list[Difference]:
    """Every difference between the live schema and the history's, sorted
    by table, the declared ones marked with their reason."""
    extra_tables = _tables(live) - _tables(history)
    missing_tables = _tables(history) - _tables(live)
    found: list[Difference] = []
    for key in sorted(live.keys() | history.keys()):
        here, there = live.get(key), history.get(key)
        if here is not None and there is not None:
            found.extend(_changed(here, there))
        elif here is not None:
            if here.kind == "column" and here.table in extra_tables:
                continue  # In the table's CREATE TABLE.
            found.append(_extra(here, live))
        elif there is not None:
            if there.kind != "table" and there.table in missing_tables:
                continue  # Gone with its table.
            found.append(_missing(there))
    exceptions = list(declared)
    for difference in found:
        difference.declared = next(
            (d for d in exceptions if fnmatch.fnmatchcase(difference.label, d.pattern)),
            None,
        )
    # A table before what belongs to it.
    return sorted(found, key=lambda d: (d.group, not d.label.startswith("table "), d.label))


def unmatched(declared: Iterable[Declared], differences: list[Difference]) -> list[Declared]:
    """Declared differences that no longer exist: their entries can go."""
    used = {id(difference.declared) for difference in differences}
    return [entry for entry in declared if id(entry) not in used]


def _tables(objects: dict[tuple[str, str, str], SchemaObject]) -> set[str]:
    return {found.table for found in objects.values() if found.kind == "table"}


def _extra(here: SchemaObject, live: dict[tuple[str, str, str], SchemaObject]) -> Difference:
    group = here.table
    if here.kind == "table":
        columns = [
            f"    {_column_sql(column)}"
            for column in live.values()
            if column.kind == "column" and column.table == here.table
        ]
        sql = [f"CREATE TABLE {here.table} (\n" + ",\n".join(columns) + "\n);"]
        return Difference(group, here.label, "here, not in the history", sql)
    if here.kind == "column":
        sql = [f"ALTER TABLE {here.table} ADD COLUMN {_column_sql(here)};"]
        return Difference(group, here.label, "here, not in the history", sql)
    if here.kind == "index" and here.definition.endswith(" INVALID"):
        return Difference(
            group,
            here.label,
            "INVALID, and not in the history: left by a CREATE INDEX CONCURRENTLY "
            "that failed; it slows writes and serves no query",
            [f"DROP INDEX CONCURRENTLY IF EXISTS {here.name};"],
        )
    words = "here, not in the history"
    if here.kind == "index":
        words += " (made by hand? autogenerate would propose to drop it)"
    return Difference(group, here.label, words, [here.create_sql])


def _missing(there: SchemaObject) -> Difference:
    words = "in the history, not here"
    if there.kind == "column":
        sql = f"ALTER TABLE {there.table} DROP COLUMN {quoted(there.name)};"
    elif there.kind == "constraint":
        sql = f"ALTER TABLE {there.table} DROP CONSTRAINT {quoted(there.name)};"
    elif there.kind == "trigger":
        sql = f"DROP TRIGGER {quoted(there.name)} ON {there.table};"
    elif there.kind == "view" and there.create_sql.startswith("CREATE MATERIALIZED"):
        sql = f"DROP MATERIALIZED VIEW {there.name};"
    else:
        sql = DROP[there.kind].format(name=there.name or there.table)
    return Difference(there.table, there.label, words, [sql])


def _changed(here: SchemaObject, there: SchemaObject) -> list[Difference]:
    if here.compared() == there.compared():
        return []
    group, label = here.table, here.label
    if here.kind == "column":
        return [_changed_column(here, there)]
    if here.kind == "index" and here.definition == there.definition + " INVALID":
        create = here.create_sql.replace(" INDEX ", " INDEX CONCURRENTLY ", 1)
        return [
            Difference(
                group,
                label,
                "INVALID here (a CREATE INDEX CONCURRENTLY that failed), valid in "
                "the history: no query uses it until it is built again",
                [f"DROP INDEX CONCURRENTLY {here.name};", create],
            )
        ]
    if here.kind == "enum":
        return [_changed_enum(here, there)]
    if here.kind == "extension":
        words = f"version {here.definition} here, {there.definition} in the history"
        sql = f"ALTER EXTENSION {quoted(here.name)} UPDATE TO '{here.definition}';"
        return [Difference(group, label, words, [sql])]
    words = f"defined differently: here {here.definition}; in the history {there.definition}"
    if here.kind == "constraint":
        drop = f"ALTER TABLE {here.table} DROP CONSTRAINT {quoted(here.name)};"
        return [Difference(group, label, words, [drop, here.create_sql])]
    if here.kind in ("view", "function"):
        create = here.create_sql
        if here.kind == "view" and not create.startswith("CREATE MATERIALIZED"):
            create = create.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)
        return [Difference(group, label, words, [create])]
    drop = _missing(there).sql[0]
    return [Difference(group, label, words, [drop, here.create_sql])]


def _changed_column(here: SchemaObject, there: SchemaObject) -> Difference:
    alter = f"ALTER TABLE {here.table} ALTER COLUMN {quoted(here.name)}"
    words, sql = [], []
    if here.type != there.type:
        words.append(f"type {here.type} here, {there.type} in the history")
        sql.append(f"{alter} TYPE {here.type};")
    if here.nullability != there.nullability:
        shown = {"not null": "NOT NULL", "null": "nullable"}
        words.append(
            f"{shown[str(here.nullability)]} here, {shown[str(there.nullability)]} in the history"
        )
        sql.append(f"{alter} {'SET' if here.nullability == 'not null' else 'DROP'} NOT NULL;")
    if here.default != there.default:
        words.append(
            f"{here.default or 'no default'} here, {there.default or 'no default'} in the history"
        )
        if here.default and here.default.startswith("DEFAULT "):
            sql.append(f"{alter} SET {here.default};")
        elif not here.default:
            sql.append(f"{alter} DROP DEFAULT;")
    return Difference(here.table, here.label, "; ".join(words), sql)


def _changed_enum(here: SchemaObject, there: SchemaObject) -> Difference:
    live_values = [value.replace("''", "'") for value in ENUM_VALUE.findall(here.definition)]
    history_values = [value.replace("''", "'") for value in ENUM_VALUE.findall(there.definition)]
    words, sql = [], []
    added = [value for value in live_values if value not in history_values]
    if added:
        words.append("values " + ", ".join(map(repr, added)) + " here, not in the history")
        for value in added:
            position = live_values.index(value)
            after = f" AFTER {_literal(live_values[position - 1])}" if position else ""
            sql.append(f"ALTER TYPE {here.name} ADD VALUE {_literal(value)}{after};")
    removed = [value for value in history_values if value not in live_values]
    if removed:
        words.append(
            "values "
            + ", ".join(map(repr, removed))
            + " in the history, not here (PostgreSQL cannot drop an enum value)"
        )
    if not words:
        words.append(f"values in another order: here {here.definition}")
    return Difference("", here.label, "; ".join(words), sql)


def _column_sql(column: SchemaObject) -> str:
    parts = [quoted(column.name), str(column.type)]
    if column.nullability == "not null":
        parts.append("NOT NULL")
    if column.default:
        parts.append(column.default)
    return " ".join(parts)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
