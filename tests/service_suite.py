"""A rendered service's own test suite, run and judged by exit code and parsed counts."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.rendering import answer_sets

# pytest-alembic's built-in tests, experimental ones included.
PYTEST_ALEMBIC_BUILT_INS = [
    "--test-alembic",
    "-o",
    "pytest_alembic_include_experimental=all_models_register_on_metadata,downgrade_leaves_no_trace",
]
PYTEST_ALEMBIC_BUILT_IN_COUNT = 6
OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")


def outcome_counts(pytest_stdout: str) -> dict[str, int]:
    """The counts of pytest's summary line: {"passed": 17} or {"failed": 1, "passed": 16}."""
    lines = pytest_stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    return {
        name.rstrip("s") if name == "errors" else name: int(number)
        for number, name in OUTCOME.findall(summary)
    }


def run_service_tests(project: Path, env: dict[str, str], *arguments: str) -> dict[str, int]:
    """Run the service's pytest, which must exit 0; return its outcome counts."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return outcome_counts(result.stdout)


def runs_pytest_alembic_built_ins(answers: dict[str, Any]) -> bool:
    """On one web service with examples and one without examples (test_autogenerate.py
    runs them on two services without the web layer)."""
    sets = answer_sets()
    with_web = next(a for a in sets if a["web_framework"] == "fastapi" and a["example_models"])
    without_examples = next(a for a in sets if not a["example_models"])
    return answers in (with_web, without_examples)


def service_test_count(answers: dict[str, Any]) -> int:
    """The tests a rendered service has: migrations, lint, policy (and models);
    with the web layer, its probes (and routes), and the fuzzer over all routes."""
    examples = answers["example_models"]
    count = 11 if examples else 8
    if answers["web_framework"] == "fastapi":
        count += 11 if examples else 6
    if runs_pytest_alembic_built_ins(answers):
        count += PYTEST_ALEMBIC_BUILT_IN_COUNT
    return count
