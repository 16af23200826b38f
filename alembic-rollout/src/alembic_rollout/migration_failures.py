"""What a failed migration run tells: what it left behind, and why, told by
SQLSTATE (the same in every language the server may answer in)."""

import time

from sqlalchemy.exc import DBAPIError

from alembic_rollout.lock_waits import (
    LOCK_NOT_AVAILABLE,
    QUERY_CANCELED,
    LockWaits,
    failed_statement,
    sqlstate,
)
from alembic_rollout.migration_policy import MigrationPolicy

UNCHANGED = "Migration failed and was rolled back; the database is unchanged."
EARLIER_COMMITTED = (
    "Migration failed. The revisions before the failing one were applied "
    "and committed: the database is at {now_at} (the run started at "
    "{started_at}). The failing revision was rolled back."
)
PARTLY_COMMITTED = (
    "Migration failed. An autocommit block had committed part of the "
    "failing revision, so it was not all rolled back: the database is at "
    "{now_at} (the run started at {started_at}), and what the failing "
    "revision ran in an autocommit block stays. Fix the cause and run it "
    "again."
)


def describe_failure(
    error: DBAPIError,
    policy: MigrationPolicy,
    now_at: tuple[str, ...],
    started_at: tuple[str, ...],
    partly_committed: bool = False,
    waits: LockWaits | None = None,
) -> str:
    """What the run left behind, and why it failed, told by SQLSTATE."""
    statement = failed_statement(error)
    cause = " ".join(str(error.orig).split())
    code = sqlstate(error)
    if code == LOCK_NOT_AVAILABLE:
        cause = (
            f"lock_timeout ({policy.lock_timeout_ms} ms) expired: "
            "another session holds a lock this statement needs"
        )
        if waits is not None:
            seconds = time.monotonic() - waits.started_at
            cause += (
                f"; {waits.attempts} attempt(s) in {seconds:.1f} s "
                f"(MIGRATION_LOCK_RETRY_SECONDS="
                f"{policy.lock_retry_seconds}). "
                f"Blocking it, when last seen: {waits.blockers()}"
            )
            if waits.sessions:
                end = waits.end_them()
                cause += f". Wait for it and run this again, or end it: {end}"
    elif code == QUERY_CANCELED:
        milliseconds = policy.statement_timeout_ms
        cause = (
            f"canceled: statement_timeout ({milliseconds} ms) expired, "
            f"or someone canceled it. The server said: {cause}. Raise "
            "MIGRATION_STATEMENT_TIMEOUT_MS for a long statement"
        )
    if partly_committed:
        outcome = PARTLY_COMMITTED
    elif now_at != started_at:
        outcome = EARLIER_COMMITTED
    else:
        outcome = UNCHANGED
    outcome = outcome.format(
        now_at=_revisions(now_at),
        started_at=_revisions(started_at),
    )
    return f"{outcome}\n  Cause: {cause}\n  While running: {statement[:300]}"


def _revisions(heads: tuple[str, ...]) -> str:
    return ", ".join(heads) if heads else "base"
