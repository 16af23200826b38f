"""A migration's lock waits: brief, tried again, and who was in the way.

A statement queued for its lock makes every query on the table queue behind
it. So a migration waits `lock_timeout` (one attempt), then steps aside,
holding nothing, and tries again after a pause with jitter, until its budget
of MIGRATION_LOCK_RETRY_SECONDS is spent (GitLab's with_lock_retries,
strong_migrations' lock_timeout_retries, pgroll's --lock-timeout).

Once a wait has given up, PostgreSQL no longer says who was in the way, so a
second connection watches the migrating session while it runs and keeps the
last sessions that `pg_blocking_pids()` named (safe-pg-migrations logs the
blocking queries the same way).

Errors are told apart by SQLSTATE, the same in every language the server
may answer in, never by their text.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired
QUERY_CANCELED = "57014"  # statement_timeout expired, or a cancel request
# The pause between attempts: random, up to 0.1 s doubled per attempt, at
# most this long, so a run goes on soon after the blocker ends.
MAX_PAUSE_SECONDS = 2.0
WATCH_INTERVAL_SECONDS = 0.1
# A run that ends sooner (`alembic current`, a quick upgrade) opens no
# second connection.
WATCH_AFTER_SECONDS = 0.2
# The watcher's own session, so that nobody takes it for a blocker.
WATCHER_APPLICATION_NAME = "migration lock watcher"

BLOCKING_SESSIONS = text("""
    SELECT waited.relation, blocker.pid, blocker.usename,
           blocker.application_name, host(blocker.client_addr), blocker.state,
           extract(epoch FROM now() - blocker.xact_start)::float8,
           left(regexp_replace(blocker.query, '\\s+', ' ', 'g'), 120)
    FROM pg_stat_activity AS blocker
    LEFT JOIN (
        SELECT relation::regclass::text AS relation FROM pg_locks
        WHERE pid = :pid AND NOT granted AND relation IS NOT NULL LIMIT 1
    ) AS waited ON true
    WHERE blocker.pid = ANY(pg_blocking_pids(:pid))
    ORDER BY blocker.xact_start
    """)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error, or of the one that caused `error`."""
    cause = error if isinstance(error, DBAPIError) else error.__cause__
    if isinstance(cause, DBAPIError):
        error = cause.orig or cause
    code = getattr(error, "sqlstate", None)
    return code if isinstance(code, str) else None


@dataclass(frozen=True)
class BlockingSession:
    pid: int
    user: str | None
    application_name: str | None
    client: str | None
    state: str | None
    transaction_seconds: float | None
    query: str | None

    def __str__(self) -> str:
        facts = [f"pid {self.pid}", f"user {self.user}"]
        if self.application_name:
            facts.append(f"application {self.application_name!r}")
        facts.append(f"client {self.client or 'local socket'}")
        if self.state:
            facts.append(self.state)
        if self.transaction_seconds is not None:
            facts.append(f"transaction open {self.transaction_seconds:.1f} s")
        return f"{', '.join(facts)}: {self.query or '?'}"


@dataclass
class LockWaits:
    """A run's lock waits: when its retry budget started, how many waits
    gave up, and what the watcher saw last (the relation, who held it)."""

    relation: str | None = None
    sessions: tuple[BlockingSession, ...] = ()
    watched: bool = False
    attempts: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def blockers(self) -> str:
        if not self.watched:
            return "not watched (the connection was handed to Alembic)"
        if not self.sessions:
            return "no blocking session was seen"
        return "; ".join(str(session) for session in self.sessions)

    def end_them(self) -> str:
        pids = [session.pid for session in self.sessions]
        return " ".join(f"SELECT pg_terminate_backend({pid});" for pid in pids)


@asynccontextmanager
async def watching_lock_waits(
    engine: AsyncEngine,
    migrating: AsyncConnection,
) -> AsyncIterator[LockWaits]:
    """Watch `migrating` from a second connection of `engine` while it runs."""
    pid = await migrating.scalar(select(func.pg_backend_pid()))
    assert isinstance(pid, int)
    await migrating.rollback()
    waits = LockWaits(watched=True)
    watcher = asyncio.create_task(_watch(engine, pid, waits))
    try:
        yield waits
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher


async def _watch(engine: AsyncEngine, pid: int, waits: LockWaits) -> None:
    await asyncio.sleep(WATCH_AFTER_SECONDS)
    try:
        async with engine.connect() as connection:
            # Each poll its own short transaction: a snapshot held open would
            # make CREATE INDEX CONCURRENTLY wait for the watcher itself.
            watcher = await connection.execution_options(
                isolation_level="AUTOCOMMIT",
            )
            label = func.set_config(
                "application_name",
                WATCHER_APPLICATION_NAME,
                False,
            )
            await watcher.execute(select(label))
            while True:
                found = await watcher.execute(BLOCKING_SESSIONS, {"pid": pid})
                rows = found.all()
                if rows:
                    waits.relation = rows[0][0]
                    sessions = [BlockingSession(*row[1:]) for row in rows]
                    waits.sessions = tuple(sessions)
                await asyncio.sleep(WATCH_INTERVAL_SECONDS)
    except (OSError, DBAPIError) as error:
        log.warning(
            "Not watching for blocking sessions: %s",
            " ".join(str(error).split()),
        )


def lock_retries(
    budget_seconds: int,
    waits: LockWaits,
    retryable: Callable[[BaseException], bool],
    lock_timeout_ms: int,
    statement: str | None = None,
) -> Retrying:
    """Attempts of one statement or revision, within the run's budget.

    `retryable` says whether a lock wait that gave up may be tried again;
    `statement` is what failed, for a driver's error that does not carry it.
    """
    deadline = waits.started_at + budget_seconds

    def out_of_time(_: RetryCallState) -> bool:
        return time.monotonic() >= deadline

    def is_lock_wait(error: BaseException) -> bool:
        if sqlstate(error) != LOCK_NOT_AVAILABLE:
            return False
        waits.attempts += 1
        return retryable(error)

    def announce(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "lock_timeout (%d ms) expired, attempt %d, %.1f s so far: %s; "
            "on %s, held by %s. Trying again in %.1f s, holding no lock.",
            lock_timeout_ms,
            waits.attempts,
            time.monotonic() - waits.started_at,
            (statement or failed_statement(error)).strip()[:200],
            waits.relation or "a lock",
            waits.blockers(),
            pause,
            extra={
                "attempt": waits.attempts,
                "lock_timeout_ms": lock_timeout_ms,
                "relation": waits.relation,
                "blockers": [asdict(session) for session in waits.sessions],
            },
        )

    return Retrying(
        stop=out_of_time,
        wait=wait_random_exponential(multiplier=0.1, max=MAX_PAUSE_SECONDS),
        retry=retry_if_exception(is_lock_wait),
        before_sleep=announce,
        reraise=True,
    )


def failed_statement(error: BaseException | None) -> str:
    cause = getattr(error, "__cause__", None)
    if isinstance(error, DBAPIError):
        cause = error
    statement = getattr(cause, "statement", None)
    return " ".join(str(statement).split()) if statement else "?"
