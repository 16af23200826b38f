"""What `make check-compat` costs, against the base's own suite that it runs.

    uv run python -m benchmarks.compat [--runs 3]

A fastapi service with the example models, in git, `main` the release. Timed, medians:
the tests of main's code that check-compat selects (every `tests/test_*.py` but the
migration tests), run by main's own pytest on main's schema; check-compat of a branch
that adds a nullable column (compatible); and of one that drops `hotels.location`
(broken: it also runs the failing tests again on main's schema, to tell whose they are).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import as_env, render
from tests.git_repository import commit_all, git, init_repository
from tests.postgres import postgres_server
from tests.revision_files import Revision

BRANCHES = {
    "add-stars": Revision(
        "f3f3f3f3f3f3",
        "Add hotels.stars",
        ['op.add_column("hotels", sa.Column("stars", sa.Integer()))'],
        ['op.drop_column("hotels", "stars")'],
    ),
    "drop-location": Revision(
        "d1d1d1d1d1d1",
        "Drop hotels.location",
        ['op.drop_column("hotels", "location")'],
        ['op.add_column("hotels", sa.Column("location", sa.Text()))'],
    ),
}


def seconds(command: list[str], project: Path, env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, timeout=900)
    return time.perf_counter() - started, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with (
        tempfile.TemporaryDirectory(prefix="bench-compat-") as folder,
        postgres_server() as server,
    ):
        project = render(Path(folder) / "service", "--data", "web_framework=fastapi")
        init_repository(project)
        for branch, revision in BRANCHES.items():
            git(project, "checkout", "-q", "-b", branch, "main")
            revision.write(project, branch)
            commit_all(project, revision.message)
        env = as_env(TEST_DATABASE_URL=server.render_as_string(hide_password=False))
        code_tests = sorted(
            str(path.relative_to(project))
            for path in project.glob("tests/test_*.py")
            if not path.name.startswith("test_migration")
        )
        figures = {}
        git(project, "checkout", "-q", "main")
        figures["main's own tests of its code, on its own schema"] = [
            seconds(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *code_tests],
                project,
                env,
            )
            for _ in range(runs)
        ]
        for branch, label in (("add-stars", "compatible"), ("drop-location", "broken")):
            git(project, "checkout", "-q", branch)
            check = [sys.executable, "-m", "alembic_rollout", "check-compat", "--base", "main"]
            figures[f"`make check-compat`, {label} ({branch})"] = [
                seconds(check, project, env) for _ in range(runs)
            ]
    print(f"medians of {runs} runs")
    print("| figure | time (s) | exit |")
    print("|---|---:|---:|")
    for figure, results in figures.items():
        median = statistics.median(time_ for time_, _ in results)
        exits = sorted({code for _, code in results})
        print(f"| {figure} | {median:.1f} | {', '.join(map(str, exits))} |")


if __name__ == "__main__":
    main()
