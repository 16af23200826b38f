"""Live traffic and a lock holder around a migration, for the tests and the benchmarks.

Clients on loopback read one row by key every 10 ms and record how long each read
took; a holder keeps a transaction open on a table; `alembic upgrade` runs in its own
process, its log read as it comes. Every wait is bounded.
"""

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, text

from tests.postgres import connect
from tests.rendering import SHIPPED_HEAD

TRAFFIC_BOUND_SECONDS = 180
# A revision on top of the shipped head that needs an ACCESS EXCLUSIVE lock on `users`.
NEW_COLUMN_REVISION = f'''\
"""Add nickname to users"""

import sqlalchemy as sa
from alembic import op

revision = "6b1f6b1f6b1f"
down_revision = "{SHIPPED_HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("nickname", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "nickname")
'''


@contextmanager
def key_reads(url: URL, statement: str, clients: int = 2) -> Iterator[list[float]]:
    """Clients running `statement` every 10 ms; yields the seconds each run took."""
    waits: list[float] = []
    stop = threading.Event()

    def client() -> None:
        with connect(url, autocommit=True) as connection:
            deadline = time.monotonic() + TRAFFIC_BOUND_SECONDS
            while not stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                connection.execute(text(statement))
                waits.append(time.monotonic() - started)
                stop.wait(0.01)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield waits
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


@contextmanager
def holding(url: URL, statement: str, application_name: str) -> Iterator[int]:
    """A session that ran `statement` in a transaction it keeps open; yields its pid."""
    with connect(url) as connection:
        connection.execute(
            text("SELECT set_config('application_name', :name, false)"), {"name": application_name}
        )
        connection.commit()
        pid = connection.scalar(text("SELECT pg_backend_pid()"))
        connection.execute(text(statement))
        try:
            yield int(pid)
        finally:
            connection.rollback()


class AlembicProcess:
    """`alembic ARGS` in a process of its own, its output collected line by line: the
    log (stderr) and what Alembic prints (stdout, where a failure's "FAILED:" goes)."""

    def __init__(self, project: Path, env: dict[str, str], *arguments: str) -> None:
        self.lines: list[str] = []
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alembic", *arguments],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
        self.ended_at = time.monotonic()  # the pipe closes as the process exits

    def wait_for(self, seen: Callable[[list[str]], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not seen(self.lines):
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.02)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        returncode = self.process.wait(timeout=timeout)
        self.reader.join(timeout=30)
        return returncode, "".join(self.lines)


def lock_waits_logged(count: int) -> Callable[[list[str]], bool]:
    def seen(lines: list[str]) -> bool:
        return sum("lock_timeout (" in line and "attempt" in line for line in lines) >= count

    return seen
