"""The `alembic` command line of a rendered service, as the tests run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import URL

ALEMBIC_BATCH = Path(__file__).with_name("alembic_batch.py")
# Every character that breaks hand-built URLs or configparser interpolation.
AWKWARD_PASSWORD = "p%a@s:s/w#o?r d"


class Alembic:
    """The `alembic` command line, run in a rendered project against one database."""

    def __init__(self, project: Path, database_url: URL | None = None, **settings: str) -> None:
        """Settings come from `database_url` (as DATABASE_URL) and/or `settings`
        (e.g. DB_HOST=...), and from nothing else in this process's environment."""
        self.project = project
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("DB_", "DATABASE_URL", "MIGRATION_"))
        }
        if database_url is not None:
            self.env["DATABASE_URL"] = database_url.render_as_string(hide_password=False)
        self.env.update(settings)

    def run(self, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one command with the `alembic` script itself, whatever its outcome."""
        return subprocess.run(
            [sys.executable, "-m", "alembic", *arguments],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `code` with the service's Python, in the project, with these settings."""
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def __call__(self, *arguments: str) -> str:
        """Run one command that must succeed; return its stdout."""
        result = self.run(*arguments)
        assert result.returncode == 0, (
            f"alembic {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def batch(self, *command_lines: str) -> list[str]:
        """Run several command lines in one process; return each one's stdout."""
        result = subprocess.run(
            [
                sys.executable,
                str(ALEMBIC_BATCH),
                json.dumps([line.split() for line in command_lines]),
            ],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        # The last line: post-write hooks (formatters) print to the process's stdout.
        outcomes = json.loads(result.stdout.splitlines()[-1])
        for outcome in outcomes:
            assert outcome["exit_code"] == 0, (
                f"alembic {' '.join(outcome['arguments'])} failed:\n"
                f"{outcome['stdout']}\n{outcome['stderr']}"
            )
        assert len(outcomes) == len(command_lines)
        return [outcome["stdout"] for outcome in outcomes]


def settings_env(url: URL, **overrides: str) -> dict[str, str]:
    """The service's DB_* variables for `url` (a socket directory is a host too)."""
    env = {
        "DB_HOST": url.host or str(url.query["host"]),
        "DB_PORT": str(url.port or 5432),
        "DB_USER": url.username or "postgres",
        "DB_PASSWORD": url.password or "",
        "DB_NAME": url.database or "postgres",
    }
    env.update(overrides)
    return env
