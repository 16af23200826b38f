"""What a service decides about its migration runs: its lock's key, and how
long a run waits for a lock, for a statement, and for lock retries in all.
A service builds it from its settings (env.py, `run_migrations_online`)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class MigrationPolicy:
    # The advisory lock that one run at a time holds, per database:
    # "alembic:<service>", so that two services sharing a database queue
    # apart.
    lock_key: str
    # How long a statement waits for a lock before the attempt gives up and
    # is retried, holding nothing in between (MIGRATION_LOCK_TIMEOUT_MS).
    lock_timeout_ms: int = 500
    # How long any statement of the run may take (MIGRATION_STATEMENT_TIMEOUT_MS).
    statement_timeout_ms: int = 300_000
    # How long lock retries go on in all (MIGRATION_LOCK_RETRY_SECONDS).
    lock_retry_seconds: int = 600

    def timeouts(self) -> dict[str, int]:
        """The session settings every run holds."""
        return {
            "lock_timeout": self.lock_timeout_ms,
            "statement_timeout": self.statement_timeout_ms,
        }
