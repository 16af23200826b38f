"""The schema as PostgreSQL's catalog describes it, one line per fact.

Two snapshots are equal exactly when two databases hold the same schema:
the stairway test compares the schema before a revision and after its
upgrade and downgrade; `make squash` compares the history with its baseline.
What migrations own is compared, nothing else: Alembic's version table is
left out, and so are object ids, which differ from one build to the next.
Column positions are counted among live columns, since a dropped column
leaves a gap. The stairway leaves them out: the downgrade of a dropped
column adds it back last, the only place PostgreSQL can put it.
"""

import re

from sqlalchemy import Connection, text

USER_SCHEMAS = """
    SELECT oid FROM pg_namespace
    WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'
"""
# "column hotels #3 location text": the position, after the table.
COLUMN_POSITION = re.compile(r"^(column \S+) #\d+ ")
# pg_class rows that migrations own: everything but the version table.
OWN_RELATIONS = f"""
    SELECT oid FROM pg_class
    WHERE relnamespace IN ({USER_SCHEMAS}) AND relname !~ '^alembic_version'
"""
FIRST_USER_OID = 16384

CATALOG_SQL = f"""
SELECT format('relation %s kind=%s persistence=%s', c.oid::regclass,
              c.relkind, c.relpersistence)
FROM pg_class c
WHERE c.oid IN ({OWN_RELATIONS}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT format(
    'column %s #%s %I %s%s%s%s%s%s',
    a.attrelid::regclass,
    row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
    a.attname,
    format_type(a.atttypid, a.atttypmod),
    CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
    CASE WHEN a.attgenerated = '' AND d.adbin IS NOT NULL
         THEN ' default ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
    CASE WHEN a.attgenerated <> ''
         THEN ' generated ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
    CASE a.attidentity WHEN 'a' THEN ' identity always'
                       WHEN 'd' THEN ' identity by default' ELSE '' END,
    CASE WHEN a.attcollation <> t.typcollation
         THEN ' collate ' || a.attcollation::regcollation ELSE '' END)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid IN ({OWN_RELATIONS}) AND a.attnum > 0 AND NOT a.attisdropped
    AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT format('constraint %s %I %s', conrelid::regclass, conname,
              pg_get_constraintdef(oid))
FROM pg_constraint
-- NOT NULL is on the column (PostgreSQL 18 also lists it here, under a name
-- that a renamed column keeps).
WHERE conrelid IN ({OWN_RELATIONS}) AND contype <> 'n'
UNION ALL
SELECT format('constraint of domain %s %I %s', contypid::regtype, conname,
              pg_get_constraintdef(oid))
FROM pg_constraint
WHERE contypid <> 0 AND connamespace IN ({USER_SCHEMAS})
UNION ALL
SELECT format('index %s%s', pg_get_indexdef(i.indexrelid),
              CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END)
FROM pg_index i
WHERE i.indrelid IN ({OWN_RELATIONS})
UNION ALL
SELECT format('sequence %s %s start %s increment %s min %s max %s cache %s%s%s',
              s.seqrelid::regclass, format_type(s.seqtypid, NULL), s.seqstart,
              s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
              CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END,
              coalesce(' owned by ' || (
                  SELECT pg_describe_object(dep.refclassid, dep.refobjid,
                                            dep.refobjsubid)
                  FROM pg_depend dep
                  WHERE dep.classid = 'pg_class'::regclass
                      AND dep.objid = s.seqrelid AND dep.deptype IN ('a', 'i')
                      AND dep.refclassid = 'pg_class'::regclass
                  LIMIT 1), ''))
FROM pg_sequence s
WHERE s.seqrelid IN ({OWN_RELATIONS})
UNION ALL
SELECT format('enum %s (%s)', t.oid::regtype,
              string_agg(quote_literal(e.enumlabel), ', '
                         ORDER BY e.enumsortorder))
FROM pg_type t
JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace IN ({USER_SCHEMAS})
GROUP BY t.oid
UNION ALL
SELECT format('type %s kind=%s base=%s not null=%s default=%s',
              t.oid::regtype, t.typtype, format_type(t.typbasetype, t.typtypmod),
              t.typnotnull, t.typdefault)
FROM pg_type t
LEFT JOIN pg_class c ON c.oid = t.typrelid
WHERE t.typnamespace IN ({USER_SCHEMAS}) AND t.typtype IN ('d', 'c', 'r', 'm')
    AND (c.oid IS NULL OR c.relkind = 'c')
UNION ALL
SELECT format('view %s %s', c.oid::regclass, pg_get_viewdef(c.oid))
FROM pg_class c
WHERE c.oid IN ({OWN_RELATIONS}) AND c.relkind IN ('v', 'm')
UNION ALL
SELECT format('function %s', pg_get_functiondef(p.oid))
FROM pg_proc p
WHERE p.pronamespace IN ({USER_SCHEMAS}) AND p.prokind IN ('f', 'p', 'w')
    AND NOT EXISTS (SELECT FROM pg_depend dep
                    WHERE dep.objid = p.oid AND dep.deptype = 'e')
UNION ALL
SELECT format('trigger %s', pg_get_triggerdef(oid))
FROM pg_trigger
WHERE tgrelid IN ({OWN_RELATIONS}) AND NOT tgisinternal
UNION ALL
SELECT format('extension %I %s', extname, extversion)
FROM pg_extension
WHERE extname <> 'plpgsql'
UNION ALL
SELECT format('comment on %s: %s',
              pg_describe_object(classoid, objoid, objsubid), description)
FROM pg_description
WHERE objoid >= {FIRST_USER_OID}
    AND NOT (classoid = 'pg_class'::regclass
             AND objoid = coalesce(to_regclass('alembic_version'), 0))
"""


def catalog(
    connection: Connection,
    column_positions: bool = True,
) -> list[str]:
    """Every fact about the schema, sorted: compare two with ==."""
    facts = list(connection.scalars(text(CATALOG_SQL)))
    if not column_positions:
        facts = [COLUMN_POSITION.sub(r"\1 ", fact) for fact in facts]
    return sorted(facts)


def differences(expected: list[str], actual: list[str]) -> list[str]:
    """The facts only one side has, `-` expected and `+` actual."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    return [f"- {fact}" for fact in missing] + [f"+ {fact}" for fact in extra]
