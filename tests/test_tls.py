"""TLS to the database, which managed PostgreSQL requires, on a real server with a
self-signed certificate: `?sslmode=` in DATABASE_URL, or the DB_SSL* settings, work
with both drivers, for `alembic` and for the app's /ready. A server that does not
offer TLS gets one line that names it, no traceback, and /ready a 503 in JSON."""

from pathlib import Path

import httpx
import pytest

from tests.alembic_cli import Alembic, settings_env
from tests.postgres import (
    INITDB,
    NO_TLS_SERVER,
    create_database,
    self_signed_certificate,
    set_tls,
    tls_server,
)
from tests.rendering import SHIPPED_HEAD, render_service
from tests.serving import served

pytestmark = [pytest.mark.reliability, pytest.mark.skipif(INITDB is None, reason=NO_TLS_SERVER)]


@pytest.mark.parametrize("db_driver", ["asyncpg", "psycopg"])
def test_sslmode_works_with_either_driver_and_a_server_without_tls_is_named(
    tmp_path: Path, db_driver: str
) -> None:
    project = render_service(tmp_path / "service", db_driver=db_driver, web_framework="fastapi")
    with tls_server() as (server_url, certificate):
        database_url = create_database(server_url, "hotels")
        required = database_url.update_query_dict({"sslmode": "require"})
        set_tls(server_url, on=False)

        refused = Alembic(project, required).run("upgrade", "head")
        assert refused.returncode != 0
        output = refused.stdout + refused.stderr
        assert "Traceback" not in output, output
        (failure,) = [line for line in output.splitlines() if "Cannot connect" in line]
        assert "TLS: sslmode=require" in failure, output

        with served(project, "src", required) as (base, _):
            unready = httpx.get(f"{base}/ready", timeout=30)
            assert unready.status_code == 503
            assert "TLS: sslmode=require" in unready.json()["reason"]

            set_tls(server_url, on=True)
            migrated = Alembic(project, required).run("upgrade", "head")
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
            ready = httpx.get(f"{base}/ready", timeout=30)
            assert ready.status_code == 200, ready.text

        # The server proven by its certificate, given in the URL or as settings;
        # verify-full cannot pass without TLS.
        verified = required.update_query_dict(
            {"sslmode": "verify-full", "sslrootcert": str(certificate)}
        )
        assert SHIPPED_HEAD in Alembic(project, verified)("current")
        as_settings = settings_env(
            database_url, DB_SSLMODE="verify-full", DB_SSLROOTCERT=str(certificate)
        )
        assert SHIPPED_HEAD in Alembic(project, **as_settings)("current")
        # And a certificate that is not the server's is refused, in one line.
        untrusted, _ = self_signed_certificate(tmp_path, "other")
        wrong_root = Alembic(project, verified.update_query_dict({"sslrootcert": str(untrusted)}))
        distrusted = wrong_root.run("current")
        assert distrusted.returncode != 0
        assert "Traceback" not in distrusted.stdout + distrusted.stderr
        assert f"TLS: sslmode=verify-full, sslrootcert={untrusted}" in distrusted.stdout
