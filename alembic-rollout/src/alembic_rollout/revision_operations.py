"""What revisions call, beside Alembic's `op`: work that must not hold locks
for long on a table in use.

- `concurrent_index_block()`: build or drop an index CONCURRENTLY.
- `backfill()`: update a table's rows in batches, each its own transaction.

Both need to know whether the run may commit: pytest-alembic runs revisions
inside a transaction of its own, which no revision may end. The run says so
through `run_transaction_owner()`, which the service's migration policy enters.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from alembic import op
from sqlalchemy import text

# Keyset batches: each one starts after the last id done, so the whole
# backfill reads the table once, however many rows are done already.
BACKFILL_BATCH = """
UPDATE {table} SET {assignments} WHERE id IN (
    SELECT id FROM {table} WHERE {after}({pending}) ORDER BY id
    LIMIT {batch_size}
) RETURNING id"""
# A script cannot loop: a DO block does, committing each batch (which it
# may, outside a transaction block: PostgreSQL 11 and later).
BACKFILL_SCRIPT = """
DO $$
-- backfill() of {table}
DECLARE
    updated bigint;
    last_id {table}.id%TYPE;
BEGIN
    WITH batch AS ({first}) SELECT count(*), max(id) INTO updated, last_id
        FROM batch;
    WHILE updated > 0 LOOP
        COMMIT;
        WITH batch AS ({next}) SELECT count(*), max(id) INTO updated, last_id
            FROM batch;
    END LOOP;
END
$$"""

# False while a run happens inside a transaction that its caller owns.
_run_owns_transaction = ContextVar("run_owns_transaction", default=True)


@contextmanager
def run_transaction_owner(owns_transaction: bool) -> Iterator[None]:
    """The revisions run inside it may commit (True), or run in their
    caller's transaction, which they must leave open (False)."""
    token = _run_owns_transaction.set(owns_transaction)
    try:
        yield
    finally:
        _run_owns_transaction.reset(token)


@contextmanager
def concurrent_index_block() -> Iterator[bool]:
    """Where a revision builds or drops an index CONCURRENTLY::

        with concurrent_index_block() as concurrently:
            op.create_index(..., postgresql_concurrently=concurrently)

    Alembic's autocommit block, which such statements need (it commits the
    run's transaction first), and True. A transaction that the caller owns
    cannot be committed: pytest-alembic's downgrade_leaves_no_trace runs each
    revision in a savepoint that it rolls back. There the statements run in
    that transaction, without CONCURRENTLY: False.
    """
    if not _run_owns_transaction.get():
        yield False
        return
    with op.get_context().autocommit_block():
        yield True


def backfill(
    table: str,
    assignments: str,
    pending: str,
    batch_size: int = 1000,
) -> int:
    """Update the rows of `table` that match `pending`, in batches, each
    batch its own transaction; returns how many rows were updated::

        backfill("users", "nickname = split_part(email, '@', 1)",
                 pending="nickname IS NULL")

    One UPDATE of every row locks each one until it commits, and every
    writer of those rows queues behind it. A batch holds its rows for one
    short transaction (Alembic's autocommit block), a batch whose lock wait
    gives up is tried again like any statement, and a run that fails or is
    stopped halfway resumes where it stopped: the rows already done no
    longer match `pending`. The table needs an `id` key, and the rows are
    taken in its order, each once: a row that still matches `pending` after
    its batch is left as it is. Inside a transaction that the caller owns
    (pytest-alembic), the batches run in it.
    """

    def batch(after: str) -> str:
        return BACKFILL_BATCH.format(
            table=table,
            assignments=assignments,
            pending=pending,
            batch_size=batch_size,
            after=after,
        )

    context = op.get_context()
    if context.as_sql:
        script = BACKFILL_SCRIPT.format(
            table=table,
            first=batch(""),
            next=batch("id > last_id AND "),
        )
        with context.autocommit_block():
            op.execute(script)
        return 0
    if not _run_owns_transaction.get():
        return _run_batches(batch(""), batch("id > :last AND "))
    with context.autocommit_block():
        return _run_batches(batch(""), batch("id > :last AND "))


def _run_batches(first: str, after_last: str) -> int:
    connection = op.get_bind()
    done = connection.scalars(text(first)).all()
    updated = 0
    while done:
        updated += len(done)
        last = max(done)
        done = connection.scalars(text(after_last), {"last": last}).all()
    return updated
