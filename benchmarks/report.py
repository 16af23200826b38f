"""What `make report` costs against the separate commands it runs, and the rehearsal at
two production sizes read from a stats file.

    uv run python -m benchmarks.report [--runs 3]

The four revisions of tests/rehearsal_revisions.py on a branch of the default service,
`main` the release, REHEARSAL_ROWS=100000. First, medians of `make report base=main`
against the sum of what it replaces: `alembic upgrade --sql` of the new revisions,
`lint-migrations` of their files, `make rehearse`, `make check-compat` and
`make check-released`. Then "production": main's schema with 3,000 hotels and 40,000
rooms, whose statistics `make stats-export` reads as a role that can only SELECT; the
branch is rehearsed with that file, and with the same file at 100 times its row counts.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL

from benchmarks.run import as_env, render
from tests.git_repository import commit_all, git, init_repository
from tests.postgres import create_database, execute, postgres_server
from tests.rehearsal_revisions import revision_files

ROLLOUT = [sys.executable, "-m", "alembic_rollout"]
ALEMBIC = [sys.executable, "-m", "alembic"]
HOTELS, ROOMS = 3_000, 40_000
PRODUCTION_ROWS = (
    "INSERT INTO hotels (title, location) SELECT 'Secret hotel ' || g, "
    "(ARRAY['Sochi', 'Kazan', 'Pskov'])[1 + g % 3] FROM generate_series(1, {hotels}) AS g",
    "INSERT INTO rooms (hotel_id, title, description, price, quantity) "
    "SELECT 1 + g % {hotels}, 'Secret room ' || g, CASE WHEN g % 4 = 0 THEN NULL "
    "ELSE 'A quiet room' END, 1000 + g % 500, 1 + g % 5 FROM generate_series(1, {rooms}) AS g",
    "ANALYZE hotels",
    "ANALYZE rooms",
)
WAIT = re.compile(r"traffic waited at most ([\d,]+) ms")


def timed(command: list[str], project: Path, env: dict[str, str]) -> tuple[float, str, int]:
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=900
    )
    return time.perf_counter() - started, result.stdout + result.stderr, result.returncode


def production_stats(project: Path, server: URL, stats_file: Path) -> dict[str, Any]:
    """main's schema with HOTELS and ROOMS rows, exported by a role that can only read."""
    production = create_database(server, "bench_report_production")
    production_env = as_env(DATABASE_URL=production.render_as_string(hide_password=False))
    migrated = timed([*ALEMBIC, "upgrade", "head"], project, production_env)
    if migrated[2] != 0:
        raise SystemExit(migrated[1])
    execute(production, *(s.format(hotels=HOTELS, rooms=ROOMS) for s in PRODUCTION_ROWS))
    execute(server, "DROP ROLE IF EXISTS bench_reader", autocommit=True)
    execute(server, "CREATE ROLE bench_reader LOGIN PASSWORD 'reader'", autocommit=True)
    execute(production, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_reader")
    reader = production.set(username="bench_reader", password="reader")
    exported = timed(
        [*ROLLOUT, "stats-export", "--output", str(stats_file)],
        project,
        as_env(DATABASE_URL=reader.render_as_string(hide_password=False)),
    )
    if exported[2] != 0:
        raise SystemExit(exported[1])
    written = stats_file.read_text()
    if "Secret" in written or "quiet" in written:
        raise SystemExit(f"{stats_file} holds a row value")
    stats: dict[str, Any] = json.loads(written)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with (
        tempfile.TemporaryDirectory(prefix="bench-report-") as folder,
        postgres_server() as server,
    ):
        project = render(Path(folder) / "service")
        init_repository(project)
        base_head = timed([*ALEMBIC, "heads"], project, as_env())[1].split()[0]
        stats_file = Path(folder) / "rehearsal-stats.json"
        stats = production_stats(project, server, stats_file)
        git(project, "checkout", "-q", "-b", "four-revisions")
        (versions,) = project.rglob("versions")
        for name, source in revision_files().items():
            (versions / name).write_text(source)
        commit_all(project, "Four revisions on hotels")
        new_files = [str(versions / name) for name in revision_files()]

        url = server.render_as_string(hide_password=False)
        env = as_env(DATABASE_URL=url, TEST_DATABASE_URL=url, REHEARSAL_ROWS="100000")
        separate = {
            "`alembic upgrade --sql` of the new revisions": [
                *ALEMBIC,
                "upgrade",
                f"{base_head}:head",
                "--sql",
            ],
            "`lint-migrations` of their files": [*ROLLOUT, "lint-migrations", *new_files],
            "`make rehearse`": [*ROLLOUT, "rehearse", "--base", "main"],
            "`make check-compat`": [*ROLLOUT, "check-compat", "--base", "main"],
            "`make check-released`": [*ROLLOUT, "check-released", "--base", "main"],
        }
        report = [*ROLLOUT, "report", "--base", "main"]
        times: dict[str, list[float]] = {name: [] for name in [*separate, "report"]}
        exits: dict[str, set[int]] = {name: set() for name in times}
        # In turn within each run, so that the machine's drift hits both alike.
        for _ in range(runs):
            for name, command in [*separate.items(), ("report", report)]:
                seconds, _, code = timed(command, project, env)
                times[name].append(seconds)
                exits[name].add(code)
        medians = {name: statistics.median(values) for name, values in times.items()}
        total = sum(medians[name] for name in separate)

        rows: list[str] = []
        tables = stats["tables"]
        for scale in (1, 100):
            scaled = scaled_stats(Path(folder), stats, scale)
            sized = {**env, "REHEARSAL_STATS": str(scaled)}
            seconds, output, code = timed([*ROLLOUT, "rehearse", "--base", "main"], project, sized)
            waits = WAIT.findall(output)
            seeded = re.search(r"\(rows seeded to production's sizes: ([^)]*)\)", output)
            if len(waits) != 4 or seeded is None:
                raise SystemExit(output)
            production = ", ".join(
                f"{name} {tables[name]['rows'] * scale:,}" for name in ("hotels", "rooms")
            )
            rows.append(
                f"| {production} | {seeded.group(1)} | {seconds:.1f} | {', '.join(waits)} "
                f"| {code} |"
            )

    print(f"REHEARSAL_ROWS=100000, medians of {runs} runs, timed in turn")
    print("| command | time (s) | exit |")
    print("|---|---:|---:|")
    for name, median in medians.items():
        label = "**`make report`**" if name == "report" else name
        print(f"| {label} | {median:.1f} | {', '.join(map(str, sorted(exits[name])))} |")
    print(f"| sum of the five separate commands | {total:.1f} | |")
    print(f"report / sum: {medians['report'] / total:.2f}x")
    print()
    print(f"stats exported from {HOTELS:,} hotels and {ROOMS:,} rooms by a SELECT-only role")
    print(
        "| production (stats file) | seeded | rehearsal (s) | worst wait per revision (ms): "
        "nullable column, batched backfill, volatile default, one-statement backfill | exit |"
    )
    print("|---|---|---:|---|---:|")
    print("\n".join(rows))


def scaled_stats(folder: Path, stats: dict[str, Any], scale: int) -> Path:
    """The exported file, every table's row count times `scale`."""
    tables = json.loads(json.dumps(stats["tables"]))
    for table in tables.values():
        if table["rows"] > 0:
            table["rows"] *= scale
    scaled = folder / f"rehearsal-stats-x{scale}.json"
    scaled.write_text(json.dumps({**stats, "tables": tables}))
    return scaled


if __name__ == "__main__":
    main()
