"""The configured PostgreSQL server as the tools use it (`make squash`,
`make rehearse`): its settings, databases of their own on it, and Alembic
run on a given engine.
"""

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic_rollout.revision_history import HistoryError
from alembic_rollout.scratch_databases import drop_database
from alembic_rollout.service import (
    Settings,
    create_direct_engine,
    get_settings,
    settings_error,
)

T = TypeVar("T")


def configured_settings(needed_for: str) -> Settings:
    """The settings, with a server to connect to, or a HistoryError."""
    try:
        settings = get_settings()
        settings.require_connection(direct=True)
    except settings_error() as error:
        message = f"{needed_for} needs valid settings: {error}"
        raise HistoryError(message) from None
    return settings


def run(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """`work` on a connection of its own, committed."""

    async def on_connection() -> T:
        async with engine.begin() as connection:
            return await connection.run_sync(work)

    return asyncio.run(on_connection())


@contextmanager
def scratch_database(
    server: AsyncEngine,
    settings: Settings,
    purpose: str,
) -> Iterator[AsyncEngine]:
    """A new, empty database on the configured server, named after its
    `purpose`; dropped afterwards."""
    name = f"{purpose}_{uuid.uuid4().hex[:12]}"
    admin = server.execution_options(isolation_level="AUTOCOMMIT")
    create = text(f'CREATE DATABASE "{name}"')
    run(admin, lambda connection: connection.execute(create))
    engine = create_direct_engine(settings, database=name)
    try:
        yield engine
    finally:
        asyncio.run(engine.dispose())
        run(admin, lambda connection: drop_database(connection, name))


def migrate(
    config: Config,
    engine: AsyncEngine,
    direction: str,
    revision: str,
) -> None:
    """`alembic upgrade/downgrade` on this engine (env.py takes it as given)."""
    config.attributes["connection"] = engine
    try:
        getattr(command, direction)(config, revision)
    finally:
        del config.attributes["connection"]
