"""Production topology, without a Docker engine: what the image runs, run outside Docker,
with the app behind a real PgBouncer in transaction pooling and the migrations on a
direct connection.

For each driver: the build context (the service without what .dockerignore lists) gets
the Dockerfile's `uv sync --locked --no-dev --group otel`; `alembic` refuses DB_POOLER=transaction
without MIGRATION_DATABASE_URL, then the compose file's migrate command migrates
through MIGRATION_DATABASE_URL; the Dockerfile's command serves /ready and the example
routes through PgBouncer under concurrent load.
"""

import asyncio
import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import URL, text

from tests.alembic_cli import Alembic
from tests.pgbouncer import NOT_INSTALLED, PGBOUNCER, SERVER_CONNECTIONS, pgbouncer
from tests.postgres import connect, create_database, drop_database
from tests.rendering import lock_dependencies, render_service
from tests.serving import (
    dockerfile_command,
    dockerfile_env,
    free_port,
    mixed_load,
    read_log,
    served,
)

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(PGBOUNCER is None, reason=NOT_INSTALLED),
]
ANSWER_SETS = [
    {"web_framework": "fastapi", "db_driver": "asyncpg"},
    {"web_framework": "fastapi", "db_driver": "psycopg", "code_dir": "app"},
]
# The example models' first revision ("Create table hotels").
FIRST_REVISION = "c3a1f9e2b7d4"
# In every URL of the test, so that any message that printed one would show it.
POOLER_PASSWORD = "pooler-secret-4f1c"


def build_context(project: Path, destination: Path) -> Path:
    """What `COPY . /app` copies: the service without what .dockerignore lists."""
    lines = (project / ".dockerignore").read_text().splitlines()
    patterns = [line.strip("/").removeprefix("**/") for line in lines]
    ignored = {pattern for pattern in patterns if pattern and not pattern.startswith("#")}
    shutil.copytree(project, destination, ignore=lambda _, names: ignored & set(names))
    return destination


def prepared_statements_left(pooled_url: URL) -> list[int]:
    """How many prepared statements each of PgBouncer's server connections holds:
    as many transactions open at once as it has connections take one each."""
    query = text("SELECT count(*) FROM pg_prepared_statements")
    with ExitStack() as stack:
        connections = [stack.enter_context(connect(pooled_url)) for _ in range(SERVER_CONNECTIONS)]
        return [int(connection.scalar(query)) for connection in connections]


@pytest.mark.parametrize("answers", ANSWER_SETS, ids=lambda answers: answers["db_driver"])
def test_image_serves_through_pgbouncer_after_a_direct_migration(
    answers: dict[str, Any], tmp_path: Path, postgres_server_url: URL
) -> None:
    code_dir = answers.get("code_dir", "src")
    project = render_service(tmp_path / "service", **answers)
    # A service commits its uv.lock; the Dockerfile builds from it.
    lock_dependencies(project)
    image = build_context(project, tmp_path / "image")
    assert not (image / "tests").exists()
    uv_env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    # The Dockerfile's install, tracing's group included.
    install = ["uv", "sync", "--locked", "--no-dev", "--group", "otel"]
    assert f"    {' '.join(install)}\n" in (image / "Dockerfile").read_text()
    subprocess.run(
        [*install, "--quiet"],
        cwd=image,
        env=uv_env,
        check=True,
        timeout=180,
    )
    image_bin = image / ".venv" / "bin"
    assert (image_bin / "uvicorn").exists() and not (image_bin / "pytest").exists()
    assert list((image / ".venv").glob("lib/python*/site-packages/opentelemetry/sdk"))

    name = f"topology_{answers['db_driver']}"
    direct_url = create_database(postgres_server_url, name)
    # PgBouncer starts only after the migration: nothing listens here yet.
    pooler_port = free_port()
    pooled_url = direct_url.set(host="127.0.0.1", port=pooler_port, password=POOLER_PASSWORD)
    pooled_url = pooled_url.difference_update_query(["host"])
    # The image's ENV (LOG_FORMAT=json among them), then the deploy's settings.
    image_env = {
        **dockerfile_env(image / "Dockerfile"),
        **Alembic(image, pooled_url, DB_POOLER="transaction").env,
    }
    image_env["PATH"] = f"{image_bin}{os.pathsep}{os.environ['PATH']}"
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    migrate_command = compose["services"]["migrate"]["command"]

    def run_in_image(command: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=image,
            env={**image_env, **settings},
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        # No direct connection configured: refused before any connection is tried.
        refused = run_in_image(migrate_command)
        refusal = (
            "DB_POOLER=transaction: the database settings reach PgBouncer, and migrations "
            "need PostgreSQL itself; set MIGRATION_DATABASE_URL to a direct connection"
        )
        assert refused.returncode != 0
        # Alembic prints a CommandError, once; alembic.ini keeps it out of the log.
        assert refused.stdout == f"FAILED: {refusal}\n"
        assert refused.stderr == ""

        # The compose file's migrate step, on the direct connection.
        direct = {"MIGRATION_DATABASE_URL": direct_url.render_as_string(hide_password=False)}
        migrated = run_in_image(migrate_command, **direct)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        head = (image / code_dir / "migrations" / "head_revision.txt").read_text().strip()
        with connect(direct_url) as connection:
            at = connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert at == head

        with pgbouncer(direct_url, port=pooler_port) as (pooler_url, pooler_log):
            with served(
                image,
                code_dir,
                pooled_url,
                command=dockerfile_command(image / "Dockerfile"),
                **image_env,
                **direct,
            ) as (base, app_log):
                ready = httpx.get(f"{base}/ready", timeout=10)
                assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
                outcomes = asyncio.run(mixed_load(base, clients=48, requests=1600))
                assert sum(outcomes.values()) == 1600
                assert set(outcomes) <= {"200", "201", "404"}, outcomes

                # Rollout: a newer release migrated the database, and this replica, whose
                # revisions the newer ones keep working for, stays ready; a database behind
                # its code is not.
                readiness = {}
                for revision in ("f00dfeedbeef", FIRST_REVISION, head):
                    with connect(direct_url) as connection:
                        update = "UPDATE alembic_version SET version_num = :revision"
                        connection.execute(text(update), {"revision": revision})
                        connection.commit()
                    reply = httpx.get(f"{base}/ready", timeout=10)
                    readiness[revision] = (reply.status_code, reply.json())
                assert readiness == {
                    "f00dfeedbeef": (
                        200,
                        {"status": "ready", "database": "at f00dfeedbeef, newer"},
                    ),
                    FIRST_REVISION: (
                        503,
                        {
                            "status": "behind",
                            "reason": f"database at {FIRST_REVISION}, code expects {head}",
                        },
                    ),
                    head: (200, {"status": "ready"}),
                }
                served_log = read_log(app_log)
                assert "prepared statement" not in served_log, served_log[-3000:]
                assert POOLER_PASSWORD not in served_log
            assert "prepared statement" not in pooler_log.read_text()
            # No statement outlives its transaction on the server connections.
            assert prepared_statements_left(pooler_url) == [0] * SERVER_CONNECTIONS
    finally:
        drop_database(postgres_server_url, name)
