"""`make rehearse`: each revision that the base branch lacks, applied under synthetic
traffic on a seeded scratch database, and measured.

One render, one branch with four revisions on `hotels` (tests/rehearsal_revisions.py),
one rehearsal on 200,000 rows per table: a one-statement UPDATE of every row holds
each row until it commits, so a client updating one of them waits for the whole
statement (about 0.6 s on an idle 2-core machine, more when loaded); the batched
backfill holds a thousand rows for one short transaction at a time (tens of ms). The
budget, 250 ms, sits between the two with a margin on each side. That rehearsal runs
inside `make report`, which adds the branch's SQL, lint, check-compat and
check-released to the rehearsal's figures, in Markdown for people and in JSON.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.alembic_cli import Alembic
from tests.forge_api import forge_api, github_pull_request_env
from tests.git_repository import commit_all, git, init_monorepo
from tests.postgres import connect, create_database, drop_database, execute
from tests.rehearsal_revisions import (
    BATCHED_BACKFILL,
    NULLABLE_COLUMN,
    ONE_STATEMENT_BACKFILL,
    VOLATILE_DEFAULT,
    revision_files,
)
from tests.rendering import SHIPPED_HEAD, lock_dependencies, render_service
from tests.serving import free_port

pytestmark = pytest.mark.reliability
ROWS = "200000"
MAX_WAIT_MS = 250
TOKEN = "ghs_not-a-real-token-0123456789"


def rehearse(
    project: Path, database_url: URL, *arguments: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    return tool(project, database_url, "rehearse", *arguments, **settings)


def tool(
    project: Path, database_url: URL, command: str, *arguments: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = Alembic(project, database_url).env
    env.update(REHEARSAL_ROWS=ROWS, REHEARSAL_MAX_WAIT_MS=str(MAX_WAIT_MS), **settings)
    # check-compat's base runs its tests on the same server.
    server = database_url.set(database="postgres").render_as_string(hide_password=False)
    env.setdefault("TEST_DATABASE_URL", server)
    return subprocess.run(
        [sys.executable, "-m", "scripts", command, *arguments],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def sections(report: str) -> dict[str, str]:
    """Each revision's lines of the report, by revision id."""
    found = {}
    for block in re.split(r"\n(?=  [0-9a-f]{12}  )", report):
        match = re.match(r"  ([0-9a-f]{12})  ", block)
        if match:
            found[match.group(1)] = block.split("\nToo slow")[0]
    return found


def waited_ms(section: str) -> int:
    match = re.search(r"traffic waited at most ([\d,]+) ms", section)
    assert match, section
    return int(match.group(1).replace(",", ""))


def test_rehearsal_fails_a_one_statement_backfill_and_passes_batched_work(
    tmp_path: Path, database_url: URL
) -> None:
    # In services/hotels/ of a repository, its release tagged v1.
    project = render_service(tmp_path / "services" / "hotels")
    lock_dependencies(project)
    init_monorepo(project)
    git(project, "checkout", "--quiet", "-b", "feature")
    (versions,) = project.rglob("versions")
    for name, source in revision_files().items():
        (versions / name).write_text(source)

    unknown = rehearse(project, database_url, "--base", "no-such-branch")
    # A commit of the repository without the service: said as it is, not guessed.
    empty_tree = git(project, "hash-object", "-t", "tree", "/dev/null").strip()
    without_service = git(project, "commit-tree", empty_tree, "-m", "Before the service")
    git(project, "tag", "before-service", without_service.strip())
    predates = rehearse(project, database_url, "--base", "before-service")
    closed = URL.create("postgresql", "postgres", host="127.0.0.1", port=free_port())
    unreachable = rehearse(project, closed, "--base", "v1")
    # As a GitHub Actions job of a pull request would run it, against a stand-in API.
    summary = tmp_path / "summary.md"
    with forge_api() as api:
        github = github_pull_request_env(api, tmp_path, TOKEN)
        github["GITHUB_STEP_SUMMARY"] = str(summary)
        # Production's size of hotels, from a stats file (tests/library/test_table_stats.py
        # exports one): more rows than the maximum, so it is cut, and said to be.
        stats = tmp_path / "rehearsal-stats.json"
        production = {"rows": 3_000_000, "columns": {}}
        stats.write_text(json.dumps({"format": 1, "tables": {"hotels": production}}))
        sizes = {"REHEARSAL_STATS": str(stats), "REHEARSAL_STATS_MAX_ROWS": ROWS}
        result = tool(project, database_url, "report", "--base", "v1", **github, **sizes)

    assert unknown.returncode == 1
    assert "no-such-branch is not a git commit, branch or tag here" in unknown.stderr
    assert predates.returncode == 1
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert unreachable.stderr.startswith("make rehearse: PostgreSQL: "), unreachable.stderr
    versions_there = f"services/hotels/{versions.relative_to(project).as_posix()}"
    assert (
        f"before-service has no {versions_there.removesuffix('versions')}head_revision.txt: "
        f"it has no {versions_there} either, so the service in services/hotels has no "
        "revisions there"
    ) in predates.stderr, predates.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.stdout
    assert "4 revision(s) that v1 does not have" in report
    assert f"seeded to production's sizes from {stats} (at most 200,000 rows" in report
    assert "(rows seeded to production's sizes: hotels 200,000)" in report
    cut = "(hotels: 3,000,000 rows in production, 200,000 here: REHEARSAL_STATS_MAX_ROWS cut it"
    assert cut in report
    measured = sections(report)
    order = [NULLABLE_COLUMN, BATCHED_BACKFILL, VOLATILE_DEFAULT, ONE_STATEMENT_BACKFILL]
    assert list(measured) == order
    one_statement = measured[ONE_STATEMENT_BACKFILL]
    batched = measured[BATCHED_BACKFILL]
    assert waited_ms(one_statement) > MAX_WAIT_MS, report
    assert waited_ms(batched) < MAX_WAIT_MS, report
    assert waited_ms(measured[NULLABLE_COLUMN]) < MAX_WAIT_MS, report
    too_slow = f"Too slow for live traffic: {ONE_STATEMENT_BACKFILL} made a query on hotels wait"
    assert too_slow in report
    for passed in (NULLABLE_COLUMN, BATCHED_BACKFILL):
        assert f"Too slow for live traffic: {passed}" not in report
    assert "200,000 rows written" in one_statement and "200,000 rows written" in batched
    assert "0 rows written" in measured[NULLABLE_COLUMN]
    assert re.search(r"lock ACCESS EXCLUSIVE on hotels, [\d,]+ ms\n", one_statement), one_statement
    assert re.search(
        r"lock ROW EXCLUSIVE on hotels, .* at most, in \d+ transactions seen over", batched
    ), batched
    rewrites = [revision for revision, lines in measured.items() if "rewrote hotels" in lines]
    assert rewrites == [VOLATILE_DEFAULT]
    with connect(database_url) as connection:
        scratch = "SELECT count(*) FROM pg_database WHERE datname LIKE 'rehearsal%'"
        left = connection.scalar(text(scratch))
    assert left == 0

    # The report: the verdict and its reasons first, then each revision.
    written = json.loads((project / "migration-report.json").read_text())
    markdown = (project / "migration-report.md").read_text()
    assert written["passed"] is False and markdown.startswith(
        "# Migration report: 4 revision(s) that v1 lacks\n\nThis checkout at "
    )
    v1, head = (git(project, "rev-parse", "--short=12", ref).strip() for ref in ("v1", "HEAD"))
    assert written["commits"] == {"base": v1, "checkout": f"{head}+"}
    assert f"` with uncommitted changes, against v1 at `{v1}`.\n\n**Verdict: fails.**" in markdown
    revisions = {entry["revision"]: entry for entry in written["revisions"]}
    assert list(revisions) == order
    assert [revisions[revision]["passed"] for revision in (NULLABLE_COLUMN, BATCHED_BACKFILL)] == [
        True,
        True,
    ]
    slow = revisions[ONE_STATEMENT_BACKFILL]
    assert slow["passed"] is False
    assert slow["rehearsal"]["traffic_waited_ms"] == waited_ms(one_statement)
    waited = f"{waited_ms(one_statement):,} ms on hotels"
    assert f"- {ONE_STATEMENT_BACKFILL}: made traffic wait {waited} in the rehearsal" in markdown
    assert (
        f"## {ONE_STATEMENT_BACKFILL} Add stars to hotels and fill them in one statement: fails"
        in markdown
    )
    assert f"## {NULLABLE_COLUMN} Add rating to hotels: passes" in markdown
    assert (
        "UPDATE hotels SET stars = 3" in slow["sql"] and "UPDATE hotels SET stars = 3" in markdown
    )
    rules = {found["rule"] for entry in revisions.values() for found in entry["lint"]}
    assert rules and all(f"lint `{rule}`" in markdown for rule in rules)
    checks = {check["name"]: check["passed"] for check in written["checks"]}
    assert checks == {
        "migration lint": False,
        "rehearsal": False,
        "check-compat": True,
        "check-released": True,
    }
    assert "| check-compat | passed: Compatible: the " in markdown
    assert re.search(r"\n\*Rows in the rehearsal's tables: [^\n]*hotels 200,000", markdown)
    assert "*hotels has 3,000,000 rows in production; the rehearsal seeded 200,000" in markdown
    assert written["rehearsal"]["cut_by_max_rows"] == {
        "hotels": {"production_rows": 3_000_000, "seeded_rows": 200_000}
    }
    # On the job's summary page, and as the pull request's one comment.
    assert summary.read_text() == markdown
    assert api.writes() == [("POST", "/repos/team/hotels/issues/7/comments")]
    assert api.comments[0]["body"].endswith(markdown)
    assert "Posted the report on the pull request." in result.stdout
    written_files = markdown + json.dumps(written)
    assert TOKEN not in result.stdout + result.stderr + written_files

    # A copy of production (here: the test's database) that already ran the new
    # revisions is refused, not rehearsed as if they were new.
    Alembic(project, database_url)("upgrade", "head")
    # `make stats-export` reads such a database's statistics, and none of its rows.
    exported = tool(project, database_url, "stats-export", "--output", str(stats))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "no row values" in exported.stdout
    assert {"hotels", "rooms", "users"} <= set(json.loads(stats.read_text())["tables"])
    copy = database_url.render_as_string(hide_password=False)
    on_copy = rehearse(project, database_url, "--base", "main", REHEARSAL_DATABASE_URL=copy)
    assert on_copy.returncode == 1
    assert f"database is at {ONE_STATEMENT_BACKFILL}, which main does not have" in on_copy.stderr
    # Unpacked outside any repository, the service rehearses on a copy of production,
    # whose recorded revision is the base; without a copy, it says what it lacks.
    with tempfile.TemporaryDirectory() as folder:
        unpacked = Path(folder) / "hotels"
        shutil.copytree(project, unpacked)
        copy_url = create_database(
            database_url.set(database="postgres"), f"{database_url.database}_copy"
        )
        Alembic(unpacked, copy_url)("upgrade", SHIPPED_HEAD)
        execute(
            copy_url,
            "INSERT INTO hotels (title, location) "
            "SELECT 'h' || g, 'x' FROM generate_series(1, 1000) AS g",
        )
        copy = copy_url.render_as_string(hide_password=False)
        without_git = rehearse(unpacked, database_url, REHEARSAL_DATABASE_URL=copy)
        no_base = rehearse(unpacked, database_url)
        drop_database(database_url.set(database="postgres"), copy_url.database)
    assert without_git.returncode == 0, without_git.stdout + without_git.stderr
    assert (
        "Rehearsing 4 revision(s) that REHEARSAL_DATABASE_URL's database does not have"
        in without_git.stdout
    )
    assert no_base.returncode == 1
    assert "not in a git repository, so no release tells which revisions are new" in no_base.stderr

    record_head = [sys.executable, "-m", "scripts", "record-head"]
    subprocess.run(record_head, cwd=project, check=True, capture_output=True)
    commit_all(project, "Add the revisions")
    nothing_new = rehearse(project, database_url, "--base", "feature")
    assert nothing_new.returncode == 0
    assert nothing_new.stdout.strip() == "Nothing to rehearse: feature has every revision here."
    # With no revision of its own, a branch is still reported on: its report fails when
    # it edits a released revision, as check-released does.
    unchanged = tool(project, database_url, "report", "--base", "feature")
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert (
        "No revision to rehearse or lint: feature has every revision here."
        in (project / "migration-report.md").read_text()
    )
    (batched,) = versions.glob(f"{BATCHED_BACKFILL}_*.py")
    batched.write_text(batched.read_text().replace('"rating = 3"', '"rating = 4"'))
    # The pull request's API answers 500: a warning, and the checks' verdict still holds.
    with forge_api() as failing:
        failing.failing_status = 500
        github = github_pull_request_env(failing, tmp_path, TOKEN)
        edited = tool(project, database_url, "report", "--base", "feature", **github)
    assert edited.returncode == 1, edited.stdout + edited.stderr
    said = edited.stdout + edited.stderr
    assert "GitHub answered 500 Internal Server Error to POST /repos/team/hotels/issues/7" in said
    assert "Traceback" not in said and TOKEN not in said
    assert failing.writes() == [("POST", "/repos/team/hotels/issues/7/comments")]
    reason = "  check-released: this checkout changes revisions that feature already has"
    assert reason in edited.stdout
    assert (
        f"{BATCHED_BACKFILL} ({batched.relative_to(project)}): edited"
        in (project / "migration-report.md").read_text()
    )
    # A run that stops early leaves no older report behind to be read as its own.
    stopped = tool(project, database_url, "report", "--base", "no-such-branch")
    assert stopped.returncode == 1 and not (project / "migration-report.md").exists()
