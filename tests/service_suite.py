"""A rendered service's own test suite, run and judged by exit code and the counts of
its --junit-xml report."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from tests.rendering import answer_sets

# pytest-alembic's built-in tests, experimental ones included.
PYTEST_ALEMBIC_BUILT_INS = [
    "--test-alembic",
    "-o",
    "pytest_alembic_include_experimental=all_models_register_on_metadata,downgrade_leaves_no_trace",
]
PYTEST_ALEMBIC_BUILT_IN_COUNT = 6
SERVICE_PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
# The template's environment holds every variant's plugins. A service without the web
# layer has neither schemathesis nor hypothesis installed, and loading them would add
# 1.7 s to each of its runs.
WEB_LAYER_PLUGINS_OFF = ["-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:anyio"]


def service_command(
    project: Path, *command: str, timeout: float = 300, **variables: str
) -> subprocess.CompletedProcess[str]:
    """`python -m scripts <command>` in a rendered service, with `variables` on top of
    this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "scripts", *command],
        cwd=project,
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def service_pytest(project: Path) -> list[str]:
    """The service's pytest command, with the plugins its own dependencies would load."""
    if "schemathesis" in (project / "pyproject.toml").read_text():
        return SERVICE_PYTEST
    return [*SERVICE_PYTEST, *WEB_LAYER_PLUGINS_OFF]


def junit_counts(report: Path) -> dict[str, int]:
    """Outcome counts from pytest's --junit-xml report, as its summary line counts tests:
    {"passed": 17}, or {"failed": 1, "passed": 16}. A subtest (the fuzzer's one per route)
    is reported as a testcase `name[...]` beside its test's own `name`, and is not a test."""
    cases = list(ElementTree.parse(report).getroot().iter("testcase"))
    names = {(case.get("classname"), case.get("name")) for case in cases}
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in cases:
        test_name = str(case.get("name")).split("[", 1)[0]
        if test_name != case.get("name") and (case.get("classname"), test_name) in names:
            continue
        outcomes = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcome = outcomes.pop() if outcomes else "passed"
        counts["failed" if outcome == "failure" else outcome] += 1
    return {name: count for name, count in counts.items() if count}


def run_service_tests(project: Path, env: dict[str, str], *arguments: str) -> dict[str, int]:
    """Run the service's pytest, which must exit 0; return its outcome counts."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        result = subprocess.run(
            [*service_pytest(project), f"--junit-xml={report}", *arguments],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        return junit_counts(report)


def runs_pytest_alembic_built_ins(answers: dict[str, Any]) -> bool:
    """On one web service with examples and one without examples (test_autogenerate.py
    runs them on two services without the web layer)."""
    sets = answer_sets()
    with_web = next(a for a in sets if a["web_framework"] == "fastapi" and a["example_models"])
    without_examples = next(a for a in sets if not a["example_models"])
    return answers in (with_web, without_examples)


def service_test_count(answers: dict[str, Any]) -> int:
    """The tests a rendered service has: migrations and lint (and models);
    with the web layer, its probes (and routes), and the fuzzer over all routes."""
    examples = answers["example_models"]
    count = 8 if examples else 5
    if answers["web_framework"] == "fastapi":
        count += 11 if examples else 6
    if runs_pytest_alembic_built_ins(answers):
        count += PYTEST_ALEMBIC_BUILT_IN_COUNT
    return count
