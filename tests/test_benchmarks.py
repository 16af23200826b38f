"""The benchmark script runs; its figures are read by people, not asserted here."""

import os
import subprocess
import sys

from sqlalchemy import URL

from tests.rendering import TEMPLATE_ROOT


def test_benchmarks_run_in_quick_mode(postgres_server_url: URL) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick"],
        cwd=TEMPLATE_ROOT,
        env={
            **os.environ,
            "TEST_DATABASE_URL": postgres_server_url.render_as_string(hide_password=False),
        },
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    for figure in (
        "`copier copy`, defaults",
        "`alembic current`",
        "`alembic upgrade head` (4 revisions)",
        "migration tests, 4 revisions",
        "migration lint, 4 revisions",
    ):
        assert f"| {figure} |" in result.stdout, result.stdout
