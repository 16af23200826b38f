"""Benchmarks of the template, each figure against a reference measured in the same run.

    uv run python -m benchmarks.run            # full run, writes docs/benchmarks.md
    uv run python -m benchmarks.run --quick    # few runs, small histories, prints only

Every figure is a median over several runs; machines here are noisy, so what
counts is the ratio to its reference, timed in the same run.
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from sqlalchemy import URL

from tests.postgres import create_database, drop_database, postgres_server
from tests.rendering import copy_template

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REPORT = ROOT / "docs" / "benchmarks.md"
# Names of this run's databases: unique, so that a run never touches a database it did
# not create on a server it shares (TEST_DATABASE_URL), and dropped at the end.
RUN_ID = uuid.uuid4().hex[:8]
CREATED: set[str] = set()
PACKAGES = ("copier", "alembic", "sqlalchemy", "pytest-alembic", "pydantic-settings", "asyncpg")


def bench_database(server: URL, purpose: str) -> URL:
    """A new, empty database of this run."""
    name = f"bench_{RUN_ID}_{purpose}"
    CREATED.add(name)
    return create_database(server, name)


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def median_seconds(
    command: list[str],
    cwd: Path,
    runs: int,
    env: dict[str, str] | None = None,
    before: Callable[[], object] | None = None,
) -> float:
    timings = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        run(command, cwd, env)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def as_env(**variables: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    keep.pop("DATABASE_URL", None)
    return {**keep, **variables}


def render(destination: Path, *options: str) -> Path:
    shutil.rmtree(destination, ignore_errors=True)
    template = destination.parent / "template-copy"
    if not template.exists():
        # A plain folder, like the floor template: no git clone in the timing.
        copy_template(template)
    run(
        [
            str(BIN / "copier"),
            "copy",
            "--defaults",
            "--quiet",
            *options,
            str(template),
            str(destination),
        ],
        destination.parent,
    )
    return destination


def bench_render(work: Path, runs: int) -> list[tuple[str, float, float]]:
    render(work / "warm-up")
    floor = work / "floor-template"
    (floor / "template").mkdir(parents=True)
    (floor / "copier.yml").write_text("_subdirectory: template\n")
    (floor / "template" / "README.md").write_text("One file.\n")
    target = work / "render"
    ours = [
        str(BIN / "copier"),
        "copy",
        "--defaults",
        "--quiet",
        str(work / "template-copy"),
        str(target),
    ]
    reference = [str(BIN / "copier"), "copy", "--defaults", "--quiet", str(floor), str(target)]
    clean = lambda: shutil.rmtree(target, ignore_errors=True)  # noqa: E731
    return [
        (
            "`copier copy`, defaults",
            median_seconds(ours, work, runs, before=clean),
            median_seconds(reference, work, runs, before=clean),
        )
    ]


def reference_project(service: Path, work: Path, url: URL) -> Path:
    """The same models and history in a bare `alembic init -t async` project."""
    project = work / "bare-alembic"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir()
    run([sys.executable, "-m", "alembic", "init", "-t", "async", "migrations"], project)
    (project / "src").mkdir()
    (project / "src" / "__init__.py").write_text("")
    shutil.copytree(service / "src" / "models", project / "src" / "models")
    # A revision of the history imports the policy's concurrent_index_block.
    policy = ("migration_policy.py", "revision_operations.py")
    for module in ("config.py", "database.py", *policy):
        shutil.copy(service / "src" / module, project / "src" / module)
    for revision in (service / "src" / "migrations" / "versions").glob("*.py"):
        shutil.copy(revision, project / "migrations" / "versions")
    env_py = project / "migrations" / "env.py"
    env_py.write_text(
        env_py.read_text().replace(
            "target_metadata = None",
            "from src.models import Base\ntarget_metadata = Base.metadata",
        )
    )
    ini = project / "alembic.ini"
    rendered = url.set(drivername="postgresql+asyncpg").render_as_string(False)
    ini.write_text(
        re.sub(
            r"^sqlalchemy.url = .*$",
            "sqlalchemy.url = " + rendered.replace("%", "%%"),
            ini.read_text(),
            flags=re.M,
        )
    )
    return project


def import_costs(service: Path, env: dict[str, str]) -> dict[str, float]:
    """Cumulative import time (s) of the packages `alembic current` loads."""
    output = run([sys.executable, "-X", "importtime", "-m", "alembic", "current"], service, env)
    costs = {}
    for line in output.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) <= 3:
            costs[match.group(3)] = int(match.group(1)) / 1e6
    wanted = (
        "alembic",
        "sqlalchemy",
        "sqlalchemy.ext.asyncio",
        "asyncpg",
        "pydantic",
        "pydantic_settings",
        "src.config",
        "src.database",
        "src.models",
    )
    return {name: costs[name] for name in wanted if name in costs}


def bench_commands(
    work: Path, server: URL, runs: int
) -> tuple[list[tuple[str, float, float]], dict[str, float]]:
    service = render(work / "service")
    service_env = as_env(
        DATABASE_URL=bench_database(server, "service").render_as_string(hide_password=False)
    )
    reference = reference_project(service, work, bench_database(server, "bare"))
    alembic = [sys.executable, "-m", "alembic"]
    figures = []
    for project, env in ((service, service_env), (reference, as_env())):
        run([*alembic, "upgrade", "head"], project, env)
    for label, arguments, before in (
        ("`alembic current`", ["current"], None),
        ("`alembic upgrade head` (4 revisions)", ["upgrade", "head"], ["downgrade", "base"]),
    ):
        timings = []
        for project, env in ((service, service_env), (reference, as_env())):
            prepare = None
            if before:
                prepare = lambda p=project, e=env, b=before: run([*alembic, *b], p, e)  # noqa: E731
            timings.append(median_seconds([*alembic, *arguments], project, runs, env, prepare))
        figures.append((label, *timings))
    return figures, import_costs(service, service_env)


def bench_migration_tests(
    work: Path, server: URL, sizes: list[int], runs: int
) -> list[tuple[str, float, float]]:
    figures = []
    test_env = as_env(TEST_DATABASE_URL=server.render_as_string(hide_password=False))
    for size in sizes:
        project = render(work / f"history-{size}", "--data", "formatter=none")
        database = bench_database(server, f"history_{size}")
        run(
            [sys.executable, str(ROOT / "benchmarks" / "grow_history.py"), str(size)],
            project,
            as_env(DATABASE_URL=database.render_as_string(False), PYTHONPATH=str(project)),
        )
        (project / "reference_tests").mkdir()
        shutil.copy(
            ROOT / "benchmarks" / "reference_conftest.py",
            project / "reference_tests" / "conftest.py",
        )
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        ours = median_seconds([*pytest, "tests/test_migrations.py"], project, runs, test_env)
        reference = median_seconds(
            [
                *pytest,
                "--test-alembic",
                "--alembic-tests-path",
                "reference_tests/conftest.py",
                "reference_tests/conftest.py",
            ],
            project,
            runs,
            test_env,
        )
        figures.append((f"migration tests, {size} revisions", ours, reference))
        lint = median_seconds(
            [sys.executable, "-m", "alembic_rollout", "lint-migrations"], project, runs, as_env()
        )
        offline_sql = median_seconds(
            [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"], project, runs, as_env()
        )
        figures.append((f"migration lint, {size} revisions", lint, offline_sql))
    return figures


def bench_squash(
    work: Path, server: URL, sizes: list[int], runs: int
) -> list[tuple[str, float, float]]:
    """`make squash` up to the head of each grown history, against one `upgrade head` of
    it; on the largest, a fresh `upgrade head` and the migration tests after the squash,
    against the same before it."""
    figures = []
    test_env = as_env(TEST_DATABASE_URL=server.render_as_string(hide_password=False))
    alembic = [sys.executable, "-m", "alembic"]
    for size in sizes:
        grown = work / f"history-{size}"
        squashed = work / f"squashed-{size}"
        shutil.copytree(grown, squashed)
        env = as_env(
            DATABASE_URL=server.set(database=f"bench_{RUN_ID}_history_{size}").render_as_string(
                False
            )
        )
        (head,) = run([*alembic, "heads"], grown, env).split()[:1]
        started = time.perf_counter()
        run([sys.executable, "-m", "alembic_rollout", "squash", head], squashed, env)
        squash_seconds = time.perf_counter() - started
        fresh = bench_database(server, f"fresh_{size}")
        fresh_env = as_env(DATABASE_URL=fresh.render_as_string(False))

        def recreate(purpose: str = f"fresh_{size}") -> None:
            bench_database(server, purpose)

        upgrade = [*alembic, "upgrade", "head"]
        before = median_seconds(upgrade, grown, runs, fresh_env, recreate)
        figures.append(
            (f"`make squash`, {size} revisions (vs one `upgrade head`)", squash_seconds, before)
        )
        if size == sizes[-1]:
            after = median_seconds(upgrade, squashed, runs, fresh_env, recreate)
            figures.append(
                (f"fresh `upgrade head`, {size} revisions squashed (vs not)", after, before)
            )
            pytest = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_migrations.py",
            ]
            figures.append(
                (
                    f"migration tests, {size} revisions squashed (vs not)",
                    median_seconds(pytest, squashed, runs, test_env),
                    median_seconds(pytest, grown, runs, test_env),
                )
            )
    return figures


def bench_suite() -> float:
    started = time.perf_counter()
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], ROOT)
    return time.perf_counter() - started


def table(figures: list[tuple[str, float, float]]) -> str:
    lines = ["| figure | ours (s) | reference (s) | ratio |", "|---|---:|---:|---:|"]
    for label, ours, reference in figures:
        lines.append(f"| {label} | {ours:.3f} | {reference:.3f} | {ours / reference:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, small sizes")
    parser.add_argument("--suite", action="store_true", help="also time the whole test suite")
    options = parser.parse_args()
    runs = 1 if options.quick else 9
    sizes = [4] if options.quick else [4, 50, 200]

    with tempfile.TemporaryDirectory(prefix="benchmarks-") as folder, postgres_server() as server:
        work = Path(folder)
        try:
            figures = bench_render(work, runs)
            command_figures, imports = bench_commands(work, server, runs)
            figures += command_figures
            figures += bench_migration_tests(work, server, sizes, max(1, runs // 3))
            if not options.quick:
                figures += bench_squash(work, server, sizes[-2:], max(1, runs // 3))
        finally:
            for name in CREATED:
                drop_database(server, name)
    report = table(figures)
    history = [
        (int(label.split(", ")[1].split()[0]), ours)
        for label, ours, _ in figures
        if label.startswith("migration tests")
    ]
    lines = [
        report,
        "",
        "Import cost of `alembic current` in the rendered service (cumulative, s): "
        + ", ".join(f"{name} {cost:.3f}" for name, cost in imports.items()),
    ]
    if len(history) >= 3:
        # Cost of each added revision between two sizes, fixed costs left out.
        (_, t0), (n1, t1), (n2, t2) = history[-3], history[-2], history[-1]
        middle = (t1 - t0) / (n1 - history[-3][0])
        largest = (t2 - t1) / (n2 - n1)
        lines.append(
            f"Migration tests, seconds per added revision: up to {n1}: {middle:.4f}, "
            f"up to {n2}: {largest:.4f} ({largest / middle:.2f}x)"
        )
    if options.suite:
        lines.append(f"Whole template test suite: {bench_suite():.0f} s wall time")
    print("\n".join(lines))
    if not options.quick:
        machine = (
            f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            + ", ".join(f"{package} {version(package)}" for package in PACKAGES)
        )
        # The hand-written analysis below the figures survives a new run.
        analysis = ""
        if REPORT.exists() and "\n## Analysis" in REPORT.read_text():
            analysis = "\n## Analysis" + REPORT.read_text().split("\n## Analysis", 1)[1]
        REPORT.write_text(
            f"{REPORT_HEADER}\nMeasured on {machine}.\n\n" + "\n".join(lines) + "\n" + analysis
        )


REPORT_HEADER = """# Benchmarks

Written by `uv run python benchmarks/run.py` (medians; each ratio is to a reference timed in
the same run). References: `copier copy` of a one-file template; a bare `alembic init -t async`
project with the same models and history and its URL in `alembic.ini`; pytest-alembic's built-in
tests (`--test-alembic`, an AsyncEngine on a fresh database per test) on the same histories,
grown by `benchmarks/grow_history.py` (autogenerated: new tables with a foreign key to the
previous one, and new columns); for the migration lint (`alembic-rollout lint-migrations`, every
revision's SQL through squawk), one `alembic upgrade head --sql` of the same history; for
`make squash` up to the head of a grown history (proof included), one `alembic upgrade head` of
it, and on the largest history, a fresh `upgrade head` and the migration tests before the squash.
"""


if __name__ == "__main__":
    main()
