"""Reading a live database without changing it: one connection, whose
transaction is rolled back, and the heads that database records.

What `make drift` and `make plan` read of the configured database.
"""

import asyncio
from collections.abc import Callable
from typing import TypeVar

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic_rollout.connect_failures import describe_connect_failure
from alembic_rollout.revision_history import HistoryError, unreachable
from alembic_rollout.squash_baselines import refuse_squashed_heads

T = TypeVar("T")


class CannotConnect(Exception):
    """The server refused the connection, or was not there."""


def read_only(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """`work` on a connection of its own, whose transaction is rolled back.
    A connection that cannot be made is a CannotConnect, in one line."""

    async def on_connection() -> T:
        try:
            try:
                connection = await engine.connect()
            except (OSError, DBAPIError) as error:
                raise CannotConnect(describe_connect_failure(engine, error)) from None
            try:
                return await connection.run_sync(work)
            finally:
                await connection.close()  # Rolls the transaction back.
        finally:
            await engine.dispose()

    return asyncio.run(on_connection())


def database_name(engine: AsyncEngine) -> str:
    """The database as a refusal names it, without credentials."""
    return f"{engine.url.database} on {engine.url.host or 'a local socket'}"


def read_live(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """read_only(), with a server that cannot be reached or read as a
    HistoryError in one line."""
    try:
        return read_only(engine, work)
    except CannotConnect as error:
        raise HistoryError(str(error)) from None
    except DBAPIError as error:  # Connected, but could not read (a privilege?).
        message = f"reading {database_name(engine)} failed: {unreachable(error)}"
        raise HistoryError(message) from None


def recorded_heads(connection: Connection) -> tuple[str, ...] | None:
    """The revisions the database records; None without alembic_version."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return MigrationContext.configure(connection).get_current_heads()


def refuse_unknown_heads(
    scripts: ScriptDirectory, heads: tuple[str, ...], database: str, advice: str
) -> None:
    """A HistoryError naming each recorded head this history does not have
    (a squashed one says what the squash replaced it with)."""
    known = {script.revision for script in scripts.walk_revisions()}
    unknown = [head for head in heads if head not in known]
    if not unknown:
        return
    try:
        refuse_squashed_heads(scripts, unknown)
    except CommandError as error:
        raise HistoryError(str(error)) from None
    raise HistoryError(
        f"{database} records revision {', '.join(unknown)}, which this checkout's history "
        f"does not have (deployed from a newer branch?): {advice}"
    )
