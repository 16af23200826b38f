"""What the revision log costs: `alembic` with it (this checkout) and without it (the
v0.14.0 release, the last before it), on the same models, history and server.

    uv run python -m benchmarks.revision_log [--runs 7] [--history 50]

Figures are medians. `alembic current` reads no log; `upgrade head` with nothing to
apply is the check of every applied revision against the log (one query, and each
revision file parsed); from base it also writes one row per step.
The longer history is grown by benchmarks/grow_history.py in this checkout's service,
and copied into the release's.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import (
    BIN,
    ROOT,
    as_env,
    bench_database,
    render,
    run,
)
from tests.postgres import drop_database, postgres_server
from tests.rendering import release_commit

RELEASE = "v0.14.0"
ALEMBIC = [sys.executable, "-m", "alembic"]


def render_release(destination: Path) -> Path:
    run(
        [
            str(BIN / "copier"),
            "copy",
            "--defaults",
            "--quiet",
            "--vcs-ref",
            release_commit(RELEASE),
            str(ROOT),
            str(destination),
        ],
        destination.parent,
    )
    return destination


FIGURES = (
    ("`alembic current`", ["current"], None),
    ("`alembic upgrade head`, at the head", ["upgrade", "head"], None),
    ("`alembic upgrade head`, from base", ["upgrade", "head"], ["downgrade", "base"]),
)


def paired_medians(
    projects: list[tuple[Path, dict[str, str]]], runs: int
) -> dict[str, list[float]]:
    """Each figure's median per project, the projects timed in turn within each run:
    this machine drifts by 10-20 % within minutes, and both sides drift alike."""
    for project, env in projects:
        run([*ALEMBIC, "upgrade", "head"], project, env)
    medians = {}
    for figure, arguments, before in FIGURES:
        timings: list[list[float]] = [[] for _ in projects]
        for _ in range(runs):
            for (project, env), seconds in zip(projects, timings, strict=True):
                if before:
                    run([*ALEMBIC, *before], project, env)
                started = time.perf_counter()
                run([*ALEMBIC, *arguments], project, env)
                seconds.append(time.perf_counter() - started)
        medians[figure] = [statistics.median(seconds) for seconds in timings]
        if before:
            for project, env in projects:
                run([*ALEMBIC, "upgrade", "head"], project, env)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--history", type=int, default=50, help="revisions of the long history")
    arguments = parser.parse_args()
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-revision-log-") as folder,
        postgres_server() as server,
    ):
        work = Path(folder)
        with_log = render(work / "with-log")
        without = render_release(work / "without")
        databases = {}
        for name in ("with_log", "without", "grown"):
            databases[name] = bench_database(server, f"log_{name}")
        try:
            envs = {
                project: as_env(DATABASE_URL=databases[key].render_as_string(False))
                for key, project in (("with_log", with_log), ("without", without))
            }
            pair = [(with_log, envs[with_log]), (without, envs[without])]
            medians = paired_medians(pair, arguments.runs)
            rows += [(f"{figure} (4 revisions)", *seconds) for figure, seconds in medians.items()]

            # The longer history: grown once, then the same files in both projects.
            grown_env = as_env(
                DATABASE_URL=databases["grown"].render_as_string(False),
                PYTHONPATH=str(with_log),
            )
            run(
                [
                    sys.executable,
                    str(ROOT / "benchmarks" / "grow_history.py"),
                    str(arguments.history),
                ],
                with_log,
                grown_env,
            )
            for folder_name in ("models", "migrations/versions"):
                source, target = with_log / "src" / folder_name, without / "src" / folder_name
                shutil.rmtree(target)
                shutil.copytree(source, target)
            run([*ALEMBIC, "downgrade", "base"], with_log, envs[with_log])
            run([*ALEMBIC, "downgrade", "base"], without, envs[without])
            medians = paired_medians(pair, arguments.runs)
            size = arguments.history
            rows += [
                (f"{figure} ({size} revisions)", *seconds) for figure, seconds in medians.items()
            ]
        finally:
            for database in databases.values():
                drop_database(server, str(database.database))
    print(f"medians of {arguments.runs} runs; without the log: {RELEASE}")
    print(f"| figure | with the log (s) | {RELEASE}, without (s) | ratio |")
    print("|---|---:|---:|---:|")
    for figure, ours_seconds, theirs_seconds in rows:
        ratio = ours_seconds / theirs_seconds
        print(f"| {figure} | {ours_seconds:.3f} | {theirs_seconds:.3f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
