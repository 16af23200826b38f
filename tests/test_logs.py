"""What a log stack reads: with the image's LOG_FORMAT=json, every line of the app and of
`alembic` is one JSON object; a request's line has its id, method, route, status and
duration; a failed request's line has the error's type and the same id; each migration
step has its revision and duration, and a lock wait retried names who held the lock.
LOG_FORMAT=text stays the local default, and no password reaches either.
"""

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import URL

from tests.alembic_cli import Alembic
from tests.lock_traffic import NEW_COLUMN_REVISION, AlembicProcess, holding, lock_waits_logged
from tests.postgres import execute
from tests.rendering import SHIPPED_HEAD, render_service
from tests.serving import dockerfile_command, dockerfile_env, read_log, served

pytestmark = pytest.mark.reliability
PASSWORD = "never in a log 7c1e"
READER = "nightly report"


def json_lines(output: str) -> list[dict[str, Any]]:
    """Each non-empty line as JSON; a line that is not fails with the line shown."""
    parsed = []
    for line in output.splitlines():
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def log_when(log: tuple[Any, Any], seen: Callable[[str], bool]) -> str:
    """The server's log, once `seen` finds what it waits for (10 s at most)."""
    deadline = time.monotonic() + 10
    while not seen(text := read_log(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


@pytest.fixture
def service(tmp_path: Path) -> Path:
    return render_service(tmp_path / "service", web_framework="fastapi")


def test_the_image_logs_json_lines_with_request_ids(service: Path, database_url: URL) -> None:
    image_env = dockerfile_env(service / "Dockerfile")
    assert image_env["LOG_FORMAT"] == "json"
    alembic = Alembic(service, database_url, **image_env)
    migrated = alembic.run("upgrade", "head")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    steps = [line for line in json_lines(migrated.stderr) if "revision" in line]
    assert [step["revision"] for step in steps][-1] == SHIPPED_HEAD
    assert all(step["direction"] == "upgrade" for step in steps)
    assert all(isinstance(step["duration_ms"], int) for step in steps)

    command = dockerfile_command(service / "Dockerfile")
    with served(service, "src", database_url, command=command, **image_env) as (base, log):
        with httpx.Client(base_url=base, timeout=10) as client:
            listed = client.get("/hotels")
            traced = client.get("/hotels/404", headers={"X-Request-ID": "trace-42"})
            user = {"email": "first@example.com", "password": PASSWORD}
            created = client.post("/users", json=user)
            assert client.get("/ready").status_code == 200
            # A table gone under the running app: a bug's 500, not the database's 503,
            # whose statement's parameters (an email, a password's hash) are not logged.
            execute(database_url, "DROP TABLE users CASCADE")
            failed = client.post("/users", json={**user, "email": "second@example.com"})
        # The line of a request is written as its reply has gone.
        served_log = log_when(log, lambda text: '"status": 500' in text)

    assert (listed.status_code, traced.status_code, created.status_code) == (200, 404, 201)
    assert failed.status_code == 500
    lines = json_lines(served_log)
    requests = {line["request_id"]: line for line in lines if "route" in line}
    listed_id = listed.headers["X-Request-ID"]
    assert requests[listed_id]["method"] == "GET"
    assert requests[listed_id]["route"] == "/hotels"
    assert requests[listed_id]["status"] == 200
    assert requests[listed_id]["duration_ms"] >= 0
    # A caller's id is kept, and the route is the template, not the path sent.
    assert traced.headers["X-Request-ID"] == "trace-42"
    assert requests["trace-42"]["route"] == "/hotels/{hotel_id}"
    assert requests["trace-42"]["status"] == 404
    failed_id = failed.json()["request_id"]
    assert failed.headers["X-Request-ID"] == failed_id
    assert requests[failed_id]["status"] == 500
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["request_id"] == failed_id
    assert error["error_type"] == "ProgrammingError"
    assert "[SQL parameters hidden due to hide_parameters=True]" in error["exc_info"]
    assert PASSWORD not in served_log + migrated.stdout + migrated.stderr
    assert "second@example.com" not in served_log and "$argon2" not in served_log
    # The probes, and the Alembic lines of /ready's check of the head, stay below INFO.
    assert not any(line["logger"].startswith("alembic") for line in lines)
    assert not any(line.get("route") in ("/health", "/ready") for line in lines)


def test_text_stays_the_local_default(service: Path, database_url: URL) -> None:
    alembic = Alembic(service, database_url)
    assert "LOG_FORMAT=text" in (service / ".env.example").read_text()
    migrated = alembic.run("upgrade", "head")
    assert f"INFO  [alembic_rollout.revision_log] upgrade {SHIPPED_HEAD} ran in " in (
        migrated.stderr
    )
    with served(service, "src", database_url) as (base, log):
        assert httpx.get(f"{base}/hotels", timeout=10).status_code == 200
        served_log = log_when(log, lambda text: "GET /hotels " in text)
    assert "INFO  [src.api.request_log] GET /hotels 200 in " in served_log
    assert re.search(r"GET /hotels 200 in [\d.]+ ms \(request [0-9a-f]{32}\)\n", served_log)
    assert not any(line.startswith("{") for line in served_log.splitlines())

    refused = Alembic(service, database_url, LOG_FORMAT="xml").run("current")
    assert refused.returncode != 0
    assert (
        refused.stdout == "FAILED: Invalid settings: LOG_FORMAT: Input should be 'text' or 'json'\n"
    )
    assert refused.stderr == ""


def test_a_lock_wait_retried_is_one_json_line_naming_the_holder(
    service: Path, database_url: URL
) -> None:
    (versions,) = service.rglob("versions")
    (versions / "6b1f6b1f6b1f_add_nickname_to_users.py").write_text(NEW_COLUMN_REVISION)
    alembic = Alembic(service, database_url, LOG_FORMAT="json")
    alembic("upgrade", SHIPPED_HEAD)

    with holding(database_url, "SELECT count(*) FROM users", READER) as reader_pid:
        run = AlembicProcess(service, alembic.env, "upgrade", "head")
        run.wait_for(lock_waits_logged(2))
    returncode, output = run.finish()

    assert returncode == 0, output
    retries = [line for line in json_lines(output) if "attempt" in line]
    assert len(retries) >= 2
    assert retries[0]["level"] == "WARNING"
    assert retries[0]["relation"] == "users"
    assert retries[0]["lock_timeout_ms"] == 500
    (holder,) = retries[-1]["blockers"]
    assert (holder["pid"], holder["application_name"]) == (reader_pid, READER)
    assert isinstance(holder["transaction_seconds"], float)
    assert not retries[0]["message"].split(": ", 1)[1].startswith("\n")
    (step,) = [line for line in json_lines(output) if line.get("revision") == "6b1f6b1f6b1f"]
    assert step["duration_ms"] >= 0
