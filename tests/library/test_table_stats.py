"""Production's sizes without its data: statistics exported from one database
(alembic_rollout.table_stats) seed another to the same shape
(alembic_rollout.seeding)."""

from pathlib import Path

import pytest
from alembic_rollout.seeding import Seeded, seed
from alembic_rollout.table_stats import (
    ColumnStats,
    StatsError,
    TableStats,
    export,
    missing_statistics,
    read_stats,
    write_stats,
)
from sqlalchemy import URL, text

from tests.postgres import connect, create_database, drop_database, execute

SCHEMA = (
    "CREATE TABLE guests (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "email text NOT NULL UNIQUE, country text NOT NULL, note text)",
    "CREATE TABLE visits (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "guest_id bigint NOT NULL REFERENCES guests (id))",
)
# 3,000 guests from 5 countries, a note on 7 in 10 of them.
PRODUCTION_ROWS = (
    "INSERT INTO guests (email, country, note) SELECT 'secret-' || g || '@example.com', "
    "(ARRAY['Narnia', 'Oz', 'Lilliput', 'Atlantis', 'Avalon'])[1 + g % 5], "
    "CASE WHEN g % 10 < 3 THEN NULL ELSE 'private note ' || g END "
    "FROM generate_series(1, 3000) AS g",
    "ANALYZE guests",
)
# 100 rows each, analyzed: the reader is granted guests, not audit.
FILLED = ("audit", "guests")


def test_exported_statistics_seed_the_same_shape_and_hold_no_values(
    database_url: URL, postgres_server_url: URL, reader: URL, tmp_path: Path
) -> None:
    execute(database_url, *SCHEMA, *PRODUCTION_ROWS)
    # As the README says to run it: a role that can only read the tables.
    execute(database_url, f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader.username}")
    with connect(reader) as connection:
        exported = export(connection)
    stats_file = tmp_path / "rehearsal-stats.json"
    write_stats(exported, stats_file)

    written = stats_file.read_text()
    for value in ("secret-", "Narnia", "private note"):
        assert value not in written
    guests = read_stats(stats_file)["guests"]
    assert guests.rows == 3000
    assert guests.columns["country"].distinct_values(3000) == 5
    assert guests.columns["email"].distinct_values(3000) == 3000
    assert guests.columns["note"].null_frac == pytest.approx(0.3, abs=0.02)

    rehearsal = create_database(postgres_server_url, "stats_rehearsal")
    try:
        execute(rehearsal, *SCHEMA)
        with connect(rehearsal) as connection:
            seeded = seed(connection, 100, read_stats(stats_file), max_rows=2000)
            connection.commit()
            shape = connection.execute(
                text(
                    "SELECT count(*), count(DISTINCT country), count(DISTINCT email), "
                    "avg((note IS NULL)::int) FROM guests"
                )
            ).one()
    finally:
        drop_database(postgres_server_url, "stats_rehearsal")

    # Cut to the maximum, and said so; a table never analyzed has no estimate,
    # and gets the rows of a rehearsal without stats.
    assert seeded["guests"] == Seeded(rows=2000, generated=2000, production=3000)
    assert read_stats(stats_file)["visits"].rows == -1
    assert seeded["visits"] == Seeded(rows=100, generated=100, production=None)
    rows, countries, emails, null_share = shape
    assert (rows, countries, emails) == (2000, 5, 2000)
    assert float(null_share) == pytest.approx(0.3, abs=0.03)


def test_what_an_export_lacks_is_said_table_by_table(database_url: URL, reader: URL) -> None:
    execute(
        database_url,
        "CREATE TABLE visits (id bigint)",  # never analyzed
        "CREATE TABLE refunds (id bigint)",  # analyzed, and empty
        "ANALYZE refunds",
        *(f"CREATE TABLE {name} AS SELECT generate_series(1, 100) AS id" for name in FILLED),
        *(f"ANALYZE {name}" for name in FILLED),
        f"GRANT SELECT ON visits, refunds, guests TO {reader.username}",  # not audit
    )
    with connect(reader) as connection:
        exported = export(connection)

    rows = {name: table.rows for name, table in exported.items()}
    assert rows == {"audit": 100, "guests": 100, "refunds": 0, "visits": -1}
    assert missing_statistics(exported) == [
        "No row estimate for visits: never analyzed. Run ANALYZE on them and export "
        "again; meanwhile the rehearsal gives each REHEARSAL_ROWS.",
        "No column statistics for audit: not analyzed yet, or not readable by this role "
        "(it needs SELECT on them). Their sizes are in the file, and their columns get "
        "the rehearsal's usual values; run ANALYZE, or grant SELECT, and export again.",
    ]


def test_production_sizes_past_two_billion_in_a_product_still_seed(database_url: URL) -> None:
    """Row numbers are bigints: the NULL fraction's hash multiplies them by 7919."""
    execute(database_url, "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY, body text)")
    stats = {"notes": TableStats(300_000, {"body": ColumnStats(0.5, -1, 12)})}
    with connect(database_url) as connection:
        seeded = seed(connection, 100, stats)
        nulls = connection.scalar(text("SELECT avg((body IS NULL)::int) FROM notes"))
    assert seeded["notes"] == Seeded(rows=300_000, generated=300_000, production=300_000)
    assert float(nulls) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{oops", "is not JSON"),
        ('{"format": 2, "tables": {}}', "is not a stats file of format 1"),
        ('{"format": 1, "tables": {"guests": {"rows": "many"}}}', "has a malformed entry"),
    ],
)
def test_a_bad_stats_file_is_refused_in_a_sentence(content: str, said: str, tmp_path: Path) -> None:
    bad = tmp_path / "stats.json"
    bad.write_text(content)
    with pytest.raises(StatsError, match=said):
        read_stats(bad)
    with pytest.raises(StatsError, match="cannot read REHEARSAL_STATS"):
        read_stats(tmp_path / "missing.json")
