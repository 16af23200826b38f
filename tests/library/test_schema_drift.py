"""Drift in words (alembic_rollout.schema_drift): two real databases built by the same
history, then one of them changed by hand, as production is during an incident."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic_rollout.schema_drift import (
    Declared,
    ExceptionsError,
    compare,
    load_exceptions,
    unmatched,
)
from alembic_rollout.schema_objects import schema_objects
from sqlalchemy import URL
from sqlalchemy.exc import IntegrityError

from tests.postgres import connect, create_database, drop_database, execute

HISTORY = (
    "CREATE TYPE hotel_kind AS ENUM ('inn', 'resort')",
    "CREATE TABLE hotels (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "title text NOT NULL, kind hotel_kind NOT NULL DEFAULT 'inn', rating real)",
    "CREATE TABLE rooms (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "hotel_id bigint NOT NULL REFERENCES hotels (id), price bigint NOT NULL, "
    "CONSTRAINT ck_rooms_price CHECK (price > 0))",
    "CREATE INDEX ix_rooms_hotel_id ON rooms (hotel_id)",
    "CREATE UNIQUE INDEX ux_hotels_title ON hotels (title)",
)


@pytest.fixture
def built_twice(postgres_server_url: URL) -> Iterator[tuple[URL, URL]]:
    """(live, history): both built by HISTORY."""
    names = [f"drift_{side}_{uuid.uuid4().hex[:8]}" for side in ("live", "history")]
    urls = [create_database(postgres_server_url, name) for name in names]
    for url in urls:
        execute(url, *HISTORY)
    yield urls[0], urls[1]
    for name in names:
        drop_database(postgres_server_url, name)


def differences_of(live: URL, history: URL, declared: list[Declared] | None = None) -> dict:
    with connect(live) as here, connect(history) as there:
        found = compare(schema_objects(here), schema_objects(there), declared or [])
    return {difference.label: difference for difference in found}


def test_the_same_history_is_no_drift(built_twice: tuple[URL, URL]) -> None:
    assert differences_of(*built_twice) == {}


def test_each_hand_change_is_named_with_the_sql_that_reproduces_it(
    built_twice: tuple[URL, URL],
) -> None:
    live, history = built_twice
    execute(
        live,
        "CREATE INDEX ix_hotels_title ON hotels (title)",
        "ALTER TABLE hotels ALTER COLUMN rating TYPE numeric(3,1)",
        "ALTER TABLE hotels ALTER COLUMN title DROP NOT NULL",
        "ALTER TABLE hotels ALTER COLUMN kind SET DEFAULT 'resort'",
        "ALTER TABLE rooms DROP CONSTRAINT ck_rooms_price",
        "ALTER TABLE rooms ADD COLUMN note text",
        "CREATE TABLE reports (day date PRIMARY KEY)",
        "DROP INDEX ix_rooms_hotel_id",
    )
    execute(live, "ALTER TYPE hotel_kind ADD VALUE 'hostel' AFTER 'inn'", autocommit=True)

    found = differences_of(live, history)

    assert set(found) == {
        "index ix_hotels_title",
        "column hotels.rating",
        "column hotels.title",
        "column hotels.kind",
        "constraint rooms.ck_rooms_price",
        "column rooms.note",
        "table reports",
        "constraint reports.reports_pkey",
        "index ix_rooms_hotel_id",
        "enum hotel_kind",
    }
    assert found["index ix_hotels_title"].group == "hotels"
    assert found["index ix_hotels_title"].sql == [
        "CREATE INDEX ix_hotels_title ON public.hotels USING btree (title);"
    ]
    rating = found["column hotels.rating"]
    assert rating.words == "type numeric(3,1) here, real in the history"
    assert rating.sql == ["ALTER TABLE hotels ALTER COLUMN rating TYPE numeric(3,1);"]
    assert found["column hotels.title"].words == "nullable here, NOT NULL in the history"
    assert found["column hotels.kind"].sql == [
        "ALTER TABLE hotels ALTER COLUMN kind SET DEFAULT 'resort'::hotel_kind;"
    ]
    assert found["constraint rooms.ck_rooms_price"].words == "in the history, not here"
    assert found["constraint rooms.ck_rooms_price"].sql == [
        "ALTER TABLE rooms DROP CONSTRAINT ck_rooms_price;"
    ]
    assert found["column rooms.note"].sql == ["ALTER TABLE rooms ADD COLUMN note text;"]
    assert found["table reports"].sql == ["CREATE TABLE reports (\n    day date NOT NULL\n);"]
    assert found["index ix_rooms_hotel_id"].sql == ["DROP INDEX ix_rooms_hotel_id;"]
    enum = found["enum hotel_kind"]
    assert enum.group == "" and "'hostel'" in enum.words
    assert enum.sql == ["ALTER TYPE hotel_kind ADD VALUE 'hostel' AFTER 'inn';"]


def test_an_invalid_index_is_told_apart(built_twice: tuple[URL, URL]) -> None:
    live, history = built_twice
    # Unique indexes built CONCURRENTLY over duplicates fail, and stay INVALID: one the
    # history has (dropped and rebuilt by hand), one it lacks.
    execute(live, "DROP INDEX ux_hotels_title", "INSERT INTO hotels (title) VALUES ('a'), ('a')")
    for build in (
        "CREATE UNIQUE INDEX CONCURRENTLY ux_hotels_title ON hotels (title)",
        "CREATE UNIQUE INDEX CONCURRENTLY ux_hotels_title_kind ON hotels (title, kind)",
    ):
        with pytest.raises(IntegrityError):
            execute(live, build, autocommit=True)

    found = differences_of(live, history)

    assert set(found) == {"index ux_hotels_title", "index ux_hotels_title_kind"}
    left = found["index ux_hotels_title_kind"]
    assert left.words.startswith("INVALID, and not in the history")
    assert left.sql == ["DROP INDEX CONCURRENTLY IF EXISTS ux_hotels_title_kind;"]
    rebuilt = found["index ux_hotels_title"]
    assert rebuilt.words.startswith("INVALID here")
    assert rebuilt.sql == [
        "DROP INDEX CONCURRENTLY ux_hotels_title;",
        "CREATE UNIQUE INDEX CONCURRENTLY ux_hotels_title ON public.hotels USING btree (title);",
    ]


def test_declared_differences_are_set_apart_with_their_reason(
    built_twice: tuple[URL, URL], tmp_path: Path
) -> None:
    live, history = built_twice
    execute(live, "CREATE INDEX ix_hotels_title ON hotels (title)", "CREATE VIEW daily AS SELECT 1")
    (tmp_path / "drift-exceptions.toml").write_text(
        '[[declared]]\nobject = "view daily"\nreason = "the reporting team\'s"\n\n'
        '[[declared]]\nobject = "index ix_old_*"\nreason = "gone since"\n'
    )
    declared = load_exceptions(tmp_path)

    found = differences_of(live, history, declared)

    assert found["view daily"].declared == Declared("view daily", "the reporting team's")
    assert found["index ix_hotels_title"].declared is None
    assert unmatched(declared, list(found.values())) == [Declared("index ix_old_*", "gone since")]


@pytest.mark.parametrize(
    "text",
    [
        '[[declared]]\nobject = "view daily"\n',
        "[[declared]\nobject = 1",
        '[declared]\nobject = "view daily"\nreason = "one table, not a list"\n',
        '[[exceptions]]\nobject = "view daily"\nreason = "another name"\n',
    ],
)
def test_a_bad_exceptions_file_is_refused_in_a_sentence(tmp_path: Path, text: str) -> None:
    (tmp_path / "drift-exceptions.toml").write_text(text)

    with pytest.raises(ExceptionsError, match=r"^drift-exceptions\.toml"):
        load_exceptions(tmp_path)
