"""Traffic's worst wait while a migration is blocked by a long reader, before and after
lock retries.

    uv run python -m benchmarks.lock_waits        # prints the table

A revision adds a nullable column to `users` while a reader keeps `users` open for
12 s; two clients read one user by key every 10 ms throughout. "v0.8.0 policy" is one
wait of 5 s (MIGRATION_LOCK_TIMEOUT_MS=5000, MIGRATION_LOCK_RETRY_SECONDS=0), what
services had before lock retries; "defaults" is 500 ms attempts retried for up to 600 s.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import ROOT, as_env, bench_database, render, run
from tests.lock_traffic import NEW_COLUMN_REVISION, AlembicProcess, holding, key_reads
from tests.postgres import drop_database, execute, postgres_server
from tests.rendering import SHIPPED_HEAD

READER_SECONDS = 12.0


def main() -> None:
    lines = [
        "| policy | migration | ended (s after it started) | reads | worst read (ms) "
        "| median read (ms) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    policies = {
        "v0.8.0 policy (one 5 s wait)": {
            "MIGRATION_LOCK_TIMEOUT_MS": "5000",
            "MIGRATION_LOCK_RETRY_SECONDS": "0",
        },
        "defaults (500 ms attempts, retried)": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-lock-waits-") as folder,
        postgres_server() as server,
    ):
        project = render(Path(folder) / "service")
        (versions,) = project.rglob("versions")
        (versions / "6b1f6b1f6b1f_add_nickname_to_users.py").write_text(NEW_COLUMN_REVISION)
        for name, settings in policies.items():
            database = bench_database(server, "lock_waits")
            try:
                env = as_env(DATABASE_URL=database.render_as_string(hide_password=False))
                run([sys.executable, "-m", "alembic", "upgrade", SHIPPED_HEAD], project, env)
                execute(database, "INSERT INTO users (email, hashed_password) VALUES ('a', 'x')")
                with key_reads(database, "SELECT email FROM users WHERE id = 1") as waits:
                    with holding(database, "SELECT count(*) FROM users", "nightly report"):
                        migration = AlembicProcess(project, {**env, **settings}, "upgrade", "head")
                        time.sleep(READER_SECONDS)
                    returncode, _ = migration.finish()
                assert migration.ended_at is not None
                ended = migration.ended_at - migration.started_at
                outcome = "completed" if returncode == 0 else "failed"
                lines.append(
                    f"| {name} | {outcome} | {ended:.1f} | {len(waits)} "
                    f"| {max(waits) * 1000:.0f} | {statistics.median(waits) * 1000:.1f} |"
                )
            finally:
                drop_database(server, str(database.database))
    print(f"A reader holds `users` for {READER_SECONDS:.0f} s; 2 clients read one row by key")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
