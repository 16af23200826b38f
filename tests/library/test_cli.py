"""`alembic-rollout COMMAND`: the commands are listed, and a mistyped one is refused."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest


def cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic_rollout", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_the_tools(tmp_path: Path) -> None:
    shown = cli("--help", cwd=tmp_path)

    assert shown.returncode == 0
    listed = [line.split()[0] for line in shown.stdout.splitlines() if line.startswith("  ")]
    for command in ("rehearse", "check-compat", "check-released", "squash", "lint-migrations"):
        assert command in listed


def test_a_mistyped_command_is_refused_with_the_list(tmp_path: Path) -> None:
    refused = cli("check-histroy", cwd=tmp_path)

    assert refused.returncode == 1
    assert refused.stderr.startswith("alembic-rollout: no command 'check-histroy'")
    assert "  check-history " in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("command", ["check-history", "lint-migrations", "template-source"])
def test_outside_a_service_it_says_where_to_run(command: str, tmp_path: Path) -> None:
    refused = cli(command, cwd=tmp_path)

    assert refused.returncode == 1
    assert "no alembic.ini with a pyproject.toml beside it" in refused.stderr
    assert "run this from the service's folder" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("command", ["record-head", "check-history", "db"])
def test_help_of_a_command_without_options_runs_nothing(command: str, tmp_path: Path) -> None:
    shown = cli(command, "--help", cwd=tmp_path)

    assert shown.returncode == 0
    assert shown.stdout.strip() and "Traceback" not in shown.stderr
    assert list(tmp_path.iterdir()) == []


def test_its_version_is_the_templates_newest_release() -> None:
    """A service's vendored copy says which release it came from."""
    root = Path(__file__).resolve().parents[2]
    changelog = (root / "CHANGELOG.md").read_text()
    newest = re.search(r"^## v(\S+) \(", changelog, flags=re.MULTILINE)
    project = tomllib.loads((root / "alembic-rollout" / "pyproject.toml").read_text())["project"]
    assert newest is not None and project["version"] == newest.group(1)
