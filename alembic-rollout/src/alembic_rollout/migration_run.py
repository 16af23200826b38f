"""How a service's migration runs go; env.py calls `run_migrations_online`
(and, for `--sql`, `migration_session`).

- One replica at a time: the run holds an advisory lock (the policy's
  `lock_key`), and replicas that start together queue on it, so each
  revision is applied once. A replica that waits says who holds it. Only
  upgrade, downgrade and stamp take it: what only reads (current, check,
  history) never waits for a deploy.
- Each revision commits on its own, and `statement_timeout` applies to every
  statement of the run.
- A lock is waited for `lock_timeout`, then the attempt is rolled back and
  tried again, holding nothing in between, until the policy's
  `lock_retry_seconds` have passed (lock_waits.py). An attempt is a revision,
  or a statement of an autocommit block: what was committed is never run
  again.
- A failure is one short message that says what was rolled back and what
  was not, and who held the lock a run gave up waiting for
  (migration_failures.py).
- A database at a revision that a squash replaced is refused, unchanged,
  with what to do (squash_baselines.py).
- Each applied step is logged in `alembic_version_log`, in its own
  transaction, and a database whose applied revisions were edited since is
  refused, unchanged (revision_log.py).

The lock and the settings live at session level, not transaction level:
`concurrent_index_block()` (CREATE INDEX CONCURRENTLY) commits the run's
transaction, and they must survive that. So migrations need a session of
their own, a direct connection, not a transaction-pooling PgBouncer.
"""

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.util import CommandError
from sqlalchemy import Connection, event, func, select, text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateTable
from tenacity import Retrying

from alembic_rollout.connect_failures import describe_connect_failure
from alembic_rollout.lock_waits import (
    BlockingSession,
    LockWaits,
    lock_retries,
    log,
    watching_lock_waits,
)
from alembic_rollout.migration_failures import describe_failure
from alembic_rollout.migration_policy import MigrationPolicy
from alembic_rollout.revision_log import (
    StepRecorder,
    check_applied_revisions,
    revision_log,
)
from alembic_rollout.revision_operations import run_transaction_owner
from alembic_rollout.squash_baselines import refuse_squashed_heads

# How often a waiting replica asks for the lock again, and says who has it.
LOCK_POLL_SECONDS = 0.2
LOCK_NOTICE_SECONDS = 10
# Who holds the lock: an advisory lock on a bigint key is kept in pg_locks
# as its high and low 32 bits, objsubid 1.
LOCK_HOLDER = text("""
    SELECT holder.pid, holder.usename, holder.application_name,
           host(holder.client_addr), holder.state,
           extract(epoch FROM now() - holder.xact_start),
           left(regexp_replace(holder.query, '\\s+', ' ', 'g'), 120)
    FROM pg_locks AS held
    JOIN pg_stat_activity AS holder ON holder.pid = held.pid
    WHERE held.locktype = 'advisory' AND held.granted
      AND held.objsubid = 1 AND held.database = (
          SELECT oid FROM pg_database WHERE datname = current_database())
      AND (held.classid::bigint << 32 | held.objid::bigint)
          = hashtext(:key)::bigint
    """)
# Run in a transaction the caller owns (Alembic's cookbook, pytest-alembic):
# nothing may commit it, so the run gives up what needs commits.
CALLERS_TRANSACTION = (
    "Migrating inside the caller's transaction (a connection passed in "
    "config.attributes), which only the caller may commit: no lock retries "
    "(a retry rolls back), no CONCURRENTLY in concurrent_index_block() (it "
    "commits first), and backfill()'s batches all in that transaction "
    "(each would commit). Right for tests; deploy with `alembic upgrade`, "
    "which owns its connection."
)
CONCURRENT_INDEX_BUILD = re.compile(
    r"""
    ^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+
    (IF\s+NOT\s+EXISTS\s+)?(?P<index>\S+)\s+ON\s
    """,
    re.IGNORECASE | re.VERBOSE,
)
INDEX_IS_INVALID = """
SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('{}')
"""


class RevisionSteps:
    """The command's revision steps, planned once for the whole run.

    A retried attempt continues with the steps not yet applied. Planning
    again from the database's new position would move a relative target
    (`upgrade +2`) along with it.
    """

    def __init__(self, plan: Callable[..., Iterable[RevisionStep]]) -> None:
        self.plan = plan
        self.planned: list[RevisionStep] | None = None
        self.applied = 0
        self.step_started = time.monotonic()
        # Commits of the step in progress: an autocommit block's, which a
        # retry of that step would run again.
        self.commits_in_step = 0

    def __call__(
        self,
        heads: Any,
        context: MigrationContext,
    ) -> Iterator[RevisionStep]:
        if self.planned is None:
            self.planned = list(self.plan(heads, context))
        for step in self.planned[self.applied :]:
            self.commits_in_step = 0
            self.step_started = time.monotonic()
            yield step

    def step_applied(self, **_: Any) -> None:
        self.applied += 1

    def count_commit(self, _: Connection) -> None:
        self.commits_in_step += 1


class MigrationRun:
    """The run between the lock and its release: attempts and their retries."""

    def __init__(
        self,
        migration_context: MigrationContext,
        policy: MigrationPolicy,
        waits: LockWaits,
        owns_transaction: bool,
    ) -> None:
        self.migration_context = migration_context
        self.policy = policy
        self.waits = waits
        self.owns_transaction = owns_transaction
        # Alembic has no public hook for the steps a command plans: the plan
        # is wrapped where MigrationContext keeps it.
        plan = migration_context._migrations_fn or (lambda *_: ())
        self.steps = RevisionSteps(plan)
        migration_context._migrations_fn = self.steps
        migration_context.on_version_apply_callbacks = (
            *migration_context.on_version_apply_callbacks,
            StepRecorder(lambda: self.steps.step_started),
            self.steps.step_applied,
        )

    def migrate(self, run_migrations: Callable[[], None]) -> None:
        """Run the revisions; a revision whose lock wait gave up, and of which
        nothing was committed, is rolled back (by Alembic) and tried again."""
        if self.migration_context.as_sql:
            # `--sql`: the script's BEGIN and COMMIT around its revisions.
            with self.migration_context.begin_transaction():
                run_migrations()
            return
        if not self.owns_transaction:
            run_migrations()  # The caller's transaction cannot be retried.
            return

        def nothing_committed(_: BaseException) -> bool:
            return self.steps.commits_in_step == 0

        for attempt in self._retrying(nothing_committed):
            with attempt:
                run_migrations()
        if self.waits.attempts:
            seconds = time.monotonic() - self.waits.started_at
            log.warning(
                "Completed in %.1f s, retrying %d lock wait(s) that gave up.",
                seconds,
                self.waits.attempts,
            )

    def _retrying(
        self,
        retryable: Callable[[BaseException], bool],
        statement: str | None = None,
    ) -> Retrying:
        return lock_retries(
            self.policy.lock_retry_seconds,
            self.waits,
            retryable,
            self.policy.lock_timeout_ms,
            statement,
        )

    def execute_in_autocommit(
        self,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: DefaultExecutionContext,
    ) -> bool:
        """A statement of an autocommit block is an attempt of its own: it
        holds nothing once it failed, and nothing else is pending."""
        isolation = context.execution_options.get("isolation_level")
        ours = context.root_connection is self.migration_context.connection
        if not ours or isolation != "AUTOCOMMIT":
            return False  # SQLAlchemy executes it as usual.
        build = CONCURRENT_INDEX_BUILD.match(statement)
        for attempt in self._retrying(lambda _: True, statement):
            with attempt:
                if build:
                    self._drop_if_invalid(cursor, build["index"])
                cursor.execute(statement, parameters)
        return True

    def _drop_if_invalid(self, cursor: DBAPICursor, index: str) -> None:
        """An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index,
        which `IF NOT EXISTS` would take for done: dropped before a build."""
        literal = index.replace("'", "''")
        cursor.execute(INDEX_IS_INVALID.format(literal))
        if cursor.fetchall() != [(True,)]:
            return
        drop = f"DROP INDEX CONCURRENTLY IF EXISTS {index}"
        for attempt in self._retrying(lambda _: True, drop):
            with attempt:
                cursor.execute(drop)
        log.warning("Dropped %s, left INVALID by a failed build.", index)


@contextmanager
def migration_session(
    migration_context: MigrationContext,
    policy: MigrationPolicy,
    waits: LockWaits | None = None,
) -> Iterator[MigrationRun]:
    """Hold the lock and the timeouts from the first revision to the last."""
    waits = waits or LockWaits()
    if migration_context.as_sql:
        with _scripted_session(migration_context, policy):
            yield MigrationRun(
                migration_context,
                policy,
                waits,
                owns_transaction=False,
            )
        return
    connection = migration_context.connection
    assert connection is not None
    # A caller's open transaction is theirs to end (Alembic then runs
    # inside it); otherwise each step below is committed at once.
    owns_transaction = not connection.in_transaction()
    current_heads = migration_context.get_current_heads()
    if owns_transaction:
        connection.rollback()  # The lock is waited for holding nothing.
    script = migration_context.script
    if script is not None:
        refuse_squashed_heads(script, current_heads)
    if not changes_database(migration_context):
        # A run in progress holds the lock for minutes; what only reads
        # neither waits for it nor writes to the revision log.
        yield MigrationRun(
            migration_context,
            policy,
            waits,
            owns_transaction,
        )
        return
    if not owns_transaction:
        log.warning(CALLERS_TRANSACTION)
    _acquire_lock(connection, policy.lock_key, owns_transaction)
    previous = {}
    for name, milliseconds in policy.timeouts().items():
        previous[name] = connection.scalar(select(func.current_setting(name)))
        _set_session(connection, name, str(milliseconds))
    started_at = migration_context.get_current_heads()
    if script is not None:
        try:
            check_applied_revisions(script, connection, started_at)
        except BaseException:
            # A caller's connection lives on: the lock must not stay held.
            _end_session(connection, policy.lock_key, previous, owns_transaction)
            raise
    if owns_transaction:
        connection.commit()

    run = MigrationRun(migration_context, policy, waits, owns_transaction)
    # The retry budget starts once the advisory lock is held.
    waits.started_at = time.monotonic()
    event.listen(connection, "commit", run.steps.count_commit)
    # Statements reach the database through the engine's dialect.
    engine = connection.engine
    event.listen(engine, "do_execute", run.execute_in_autocommit)
    try:
        with run_transaction_owner(owns_transaction):
            yield run
    except Exception as error:
        # alembic-postgresql-enum raises its own error from the database's.
        cause = error if isinstance(error, DBAPIError) else error.__cause__
        if not isinstance(cause, DBAPIError):
            raise
        # The failing revision was rolled back, unless an autocommit block
        # committed part of it; the revisions before it were committed.
        now_at = started_at
        if owns_transaction:
            connection.rollback()
            now_at = migration_context.get_current_heads()
            connection.rollback()
        raise CommandError(
            describe_failure(
                cause,
                policy,
                now_at,
                started_at,
                partly_committed=run.steps.commits_in_step > 0,
                waits=waits,
            )
        ) from None
    finally:
        event.remove(engine, "do_execute", run.execute_in_autocommit)
        event.remove(connection, "commit", run.steps.count_commit)
        _end_session(connection, policy.lock_key, previous, owns_transaction)


def changes_database(migration_context: MigrationContext) -> bool:
    """upgrade, downgrade and stamp name a destination; current, check,
    history, show and revision --autogenerate only read."""
    return migration_context.opts.get("destination_rev") is not None


def _acquire_lock(
    connection: Connection,
    lock_key: str,
    owns_transaction: bool,
) -> None:
    # Polled rather than waited for: a replica blocked inside
    # pg_advisory_lock() holds a snapshot, and CREATE INDEX CONCURRENTLY of
    # the replica holding the lock would wait for that snapshot: a deadlock.
    key = func.hashtext(lock_key)
    started = next_notice = time.monotonic()
    while not connection.scalar(select(func.pg_try_advisory_lock(key))):
        if time.monotonic() >= next_notice:
            held_by = connection.execute(LOCK_HOLDER, {"key": lock_key})
            holders = [str(BlockingSession(*row)) for row in held_by]
            log.warning(
                "Waiting for the migration lock (%s), %.0f s so far, held by "
                "another run: %s. This run starts once that one ends.",
                lock_key,
                time.monotonic() - started,
                "; ".join(holders) or "a session that has just let it go",
            )
            next_notice = time.monotonic() + LOCK_NOTICE_SECONDS
        if owns_transaction:
            connection.rollback()
        time.sleep(LOCK_POLL_SECONDS)


def _set_session(connection: Connection, name: str, value: str) -> None:
    connection.execute(select(func.set_config(name, value, False)))


def _end_session(
    connection: Connection,
    lock_key: str,
    previous: dict[str, str | None],
    owns_transaction: bool,
) -> None:
    """Release the lock and put the settings back, whatever happened."""
    if connection.invalidated or connection.closed:
        return  # The session is gone, and its lock with it.
    try:
        if owns_transaction and connection.in_transaction():
            connection.rollback()
        for name, value in previous.items():
            _set_session(connection, name, value or "0")
        key = func.hashtext(lock_key)
        connection.execute(select(func.pg_advisory_unlock(key)))
        if owns_transaction:
            connection.commit()
    except DBAPIError:
        # Ending the session releases the lock and the settings as well.
        connection.invalidate()


@contextmanager
def _scripted_session(
    migration_context: MigrationContext,
    policy: MigrationPolicy,
) -> Iterator[None]:
    """`alembic upgrade --sql`: the same lock and timeouts, in the script."""
    literal = policy.lock_key.replace("'", "''")
    lock_key = f"hashtext('{literal}')"
    migration_context.execute(f"SELECT pg_advisory_lock({lock_key})")
    migration_context.impl.static_output(
        "-- A script cannot step aside and retry a lock wait as `alembic "
        "upgrade` does\n-- (MIGRATION_LOCK_RETRY_SECONDS): each statement "
        "waits lock_timeout once, and\n-- the first one that gives up stops "
        "the script. Run it again from where it stopped."
    )
    for name, milliseconds in policy.timeouts().items():
        migration_context.execute(f"SET {name} = {milliseconds}")
    migration_context.execute(CreateTable(revision_log, if_not_exists=True))
    yield
    for name in policy.timeouts():
        migration_context.execute(f"RESET {name}")
    migration_context.execute(f"SELECT pg_advisory_unlock({lock_key})")


class RunOnConnection(Protocol):
    """env.py's `do_run_migrations`: configure Alembic's context on the
    connection and run under `migration_session`."""

    def __call__(
        self,
        connection: Connection,
        waits: LockWaits | None,
    ) -> None: ...


def run_migrations_online(
    do_run_migrations: RunOnConnection,
    connectable: Any,
    create_engine: Callable[[], AsyncEngine],
) -> None:
    """Run `do_run_migrations` on what the command was given, else on an
    engine of its own (`create_engine`), watching lock waits from a second
    connection.

    Tests and programmatic callers may hand over a connection or an engine
    in `config.attributes["connection"]` (Alembic's cookbook: "Sharing a
    Connection across one or more programmatic migration commands").
    pytest-alembic hands over an AsyncEngine, or an object that acts as a
    sync engine.
    """

    async def on_engine(engine: AsyncEngine) -> None:
        try:
            connection = await engine.connect()
        except (OSError, DBAPIError) as error:
            failure = describe_connect_failure(engine, error)
            raise CommandError(failure) from None
        try:
            async with watching_lock_waits(engine, connection) as lock_waits:
                await connection.run_sync(do_run_migrations, lock_waits)
        finally:
            await connection.close()

    async def on_own_engine() -> None:
        engine = create_engine()
        try:
            await on_engine(engine)
        finally:
            await engine.dispose()

    if connectable is None:
        asyncio.run(on_own_engine())
    elif isinstance(connectable, AsyncEngine):
        asyncio.run(on_engine(connectable))
    elif isinstance(connectable, Connection):
        do_run_migrations(connectable, None)
    else:
        with connectable.connect() as connection:
            do_run_migrations(connection, None)
