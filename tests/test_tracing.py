"""Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, the served app's requests and the SQL they
run, and each revision `alembic upgrade` applies, reach an OTLP/HTTP receiver as spans of the
service; unset, neither the app nor `alembic` loads OpenTelemetry's SDK, exporter or
instrumentations, and nothing is added to a request's path."""

from pathlib import Path

import httpx
import pytest
from sqlalchemy import URL

from tests.alembic_cli import Alembic
from tests.otlp_receiver import otlp_receiver
from tests.rendering import SHIPPED_HEAD, render_service
from tests.serving import served

# What tracing loads. (FastAPI itself imports OpenTelemetry's API when it is installed.)
TRACING_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")
REVISIONS = ["c3a1f9e2b7d4", "5e8d2a6b1f03", "9b4f7c1e0a62", SHIPPED_HEAD]


def test_requests_their_sql_and_each_revision_arrive_as_spans(
    tmp_path: Path, database_url: URL
) -> None:
    project = render_service(tmp_path / "service", web_framework="fastapi")
    with otlp_receiver() as (endpoint, received):
        tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        migrated = Alembic(project, database_url, **tracing).run("upgrade", "head")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        # The process flushes its spans as it exits.
        steps = [span for span in received.spans if span.name.startswith("alembic upgrade")]
        assert [span.attributes["alembic.revision"] for span in steps] == REVISIONS
        assert all(span.service == "my-service" for span in steps)
        assert all(span.attributes["alembic.duration_ms"] >= 0 for span in steps)
        migration_sql = " ".join(
            str(span.attributes.get("db.statement")) for span in received.spans
        )
        assert "CREATE TABLE hotels" in migration_sql

        received.spans.clear()
        # Nothing exported on a schedule: only the flush as the app ends, on SIGTERM.
        serving = {**tracing, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
        with served(project, "src", database_url, **serving) as (base, _):
            assert httpx.get(f"{base}/ready", timeout=10).status_code == 200
            listed = httpx.get(f"{base}/hotels", timeout=10)
            assert listed.status_code == 200
        spans = list(received.spans)

    (request,) = [span for span in spans if span.name == "GET /hotels"]
    assert request.attributes["http.route"] == "/hotels"
    assert request.service == "my-service"
    queries = [span for span in spans if "FROM hotels" in str(span.attributes.get("db.statement"))]
    assert queries and all(query.trace_id == request.trace_id for query in queries)
    assert not any("/ready" in span.name or "/health" in span.name for span in spans)
    # Nor the readiness probe's queries.
    assert not any("alembic_version" in str(span.attributes.get("db.statement")) for span in spans)
    assert set(received.paths) == {"/v1/traces"}


@pytest.mark.parametrize("endpoint", ["", None], ids=["empty", "unset"])
def test_without_an_endpoint_nothing_is_loaded_or_added(
    endpoint: str | None, tmp_path: Path, database_url: URL
) -> None:
    project = render_service(tmp_path / "service", web_framework="fastapi")
    alembic = Alembic(project, database_url)
    alembic.env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if endpoint is not None:
        alembic.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    checked = alembic.python(
        f"import sys\nTRACING_MODULES = {TRACING_MODULES!r}\n"
        "from src.main import app\n"
        "from src.migration_policy import create_migration_engine\n"
        "create_migration_engine()\n"
        "print(sorted(m for m in sys.modules if m.startswith(TRACING_MODULES)))\n"
        "print([m.cls.__name__ for m in app.user_middleware])\n"
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == ["[]", "['RequestLog']"]
