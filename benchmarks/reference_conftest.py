"""The reference: pytest-alembic set up the way its documentation shows for an
async service, an AsyncEngine on a fresh database for each built-in test.

Copied by benchmarks/run.py into a rendered service as reference_tests/conftest.py
and run with `pytest --test-alembic`.
"""

import os
import uuid
from collections.abc import Iterator

import pytest
from alembic_rollout.scratch_databases import drop_database
from sqlalchemy import create_engine, make_url, pool, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from src.config import DRIVERNAME, get_settings


@pytest.fixture
def alembic_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[AsyncEngine]:
    server = make_url(os.environ["TEST_DATABASE_URL"])
    name = f"reference_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(drivername=DRIVERNAME, database=name)
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield create_async_engine(url, poolclass=pool.NullPool)
    with admin.connect() as connection:
        drop_database(connection, name)
    admin.dispose()
