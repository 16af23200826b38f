"""`make report [base=REF]`: what the migration checks say of the revisions
that REF lacks, in one report, for a reviewer.

One run of each check the service has, each once:

- the upgrade SQL of each revision: its part of what `alembic upgrade --sql`
  writes;
- the migration lint of those revisions (squawk), finding by finding;
- the rehearsal, revision by revision (`make rehearse`): how long it took,
  the rows it wrote, the locks it held, the tables it rewrote, and the
  longest that traffic waited;
- `make check-compat`: REF's tests of its code on this schema;
- `make check-released`: REF's revisions unchanged here.

It writes migration-report.md, for people (the verdict and its reasons
first, then a section per revision), and migration-report.json, the same
for tools, in the service's folder (`--output` names another). In CI, the
Markdown also goes to the GitHub job's summary page, and on a pull or merge
request into its one report comment (alembic_rollout.review_comments). It
exits 1 when any check fails, 0 when all pass: a comment that cannot be
posted is a warning, not a failure.
"""

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alembic.script import Script
from alembic.util import CommandError

from alembic_rollout.commands.check_compat import check_compat
from alembic_rollout.commands.check_released import check_released
from alembic_rollout.commands.lint_migrations import (
    Finding,
    lint,
    revision_bodies,
    shown,
)
from alembic_rollout.commands.rehearsal import (
    Rehearsal,
    Rehearsed,
    lock_mode,
    rehearse,
)
from alembic_rollout.review_comments import PublishError, publish
from alembic_rollout.revision_history import (
    UNREACHABLE,
    HistoryError,
    add_base_argument,
    alembic_config,
    command_parser,
    default_base,
    git,
    heads_at,
    new_revisions,
    script_directory,
    unreachable,
)
from alembic_rollout.seeding import SeedingError
from alembic_rollout.service import ServiceError, in_readme, project_root
from alembic_rollout.table_stats import StatsError

REPORT = "migration-report"
# What a check raises when it fails, said in its message.
CHECK_FAILED = (HistoryError, ServiceError, SeedingError, StatsError, CommandError)


@dataclass
class Check:
    """One check over all the new revisions: passed or not, and its words."""

    name: str
    passed: bool
    lines: list[str]


@dataclass
class RevisionReport:
    revision: str
    title: str
    file: str
    sql: str
    passed: bool = True
    reasons: list[str] = field(default_factory=list)
    lint: list[dict[str, str]] = field(default_factory=list)
    rehearsal: dict[str, Any] | None = None


@dataclass
class Report:
    base: str
    revisions: list[RevisionReport]
    checks: list[Check]
    # What was compared: the base's commit and this checkout's (with "+" when
    # it has uncommitted changes), and the rehearsal's settings.
    commits: dict[str, str] = field(default_factory=dict)
    rehearsal: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def reasons(self) -> list[str]:
        """Why it fails: each failing revision's reasons, then each failed
        check that no revision explains (a rehearsal that measured nothing,
        say, because it could not start)."""
        reasons = [
            f"{revision.revision}: {reason}"
            for revision in self.revisions
            for reason in revision.reasons
        ]
        explained = set()
        if any(revision.lint for revision in self.revisions):
            explained.add("migration lint")
        if any(revision.rehearsal is not None for revision in self.revisions):
            explained.add("rehearsal")
        for check in self.checks:
            if not check.passed and check.name not in explained:
                reasons.append(f"{check.name}: {check.lines[0]}")
        return reasons


def run_check(name: str, work: Callable[[], Iterable[str]]) -> Check:
    try:
        return Check(name, True, list(work()) or ["passed"])
    except CHECK_FAILED as error:
        return Check(name, False, str(error).splitlines())
    except UNREACHABLE as error:
        return Check(name, False, [unreachable(error)])


def build_report(base: str | None) -> Report:
    config = alembic_config()
    scripts = script_directory(config)
    base = base or default_base()
    revisions = new_revisions(scripts, heads_at(base, scripts))
    commits = {"base": commit_of(base), "checkout": checkout_commit()}
    released = run_check("check-released", lambda: check_released(base))
    if not revisions:
        # No new revision, but an edited or deleted released one still fails.
        return Report(base, [], [released], commits)
    # One offline Alembic run for the report's SQL and the lint's.
    setup_and_bodies = revision_bodies(config)
    bodies = setup_and_bodies[1]
    reports = {
        script.revision: RevisionReport(
            script.revision,
            title(script),
            str(shown(Path(script.path).resolve())),
            bodies.get(script.revision, "").strip(),
        )
        for script in revisions
    }
    linted = lint(
        [Path(script.path) for script in revisions], config=config, bodies=setup_and_bodies
    )
    by_file = {report.file: report for report in reports.values()}
    for found in linted.findings:
        by_file[str(shown(found.revision_file))].lint.append(lint_finding(found))
    checks = [lint_check(linted.findings, len(linted.linted))]

    outcome: Rehearsal | None = None

    def rehearsed() -> list[str]:
        nonlocal outcome
        outcome = done = rehearse(base)
        budget = f"{done.max_wait_ms:,} ms (REHEARSAL_MAX_WAIT_MS)"
        if done.passed:
            return [f"traffic never waited over {budget}, on {done.where}"]
        slow = [r for r in done.results if r.waited_ms() > done.max_wait_ms]
        failed = [r for r in done.results if r.failure is not None]
        said = [f"{len(slow)} revision(s) made traffic wait over {budget}"] if slow else []
        said += [f"{len(failed)} revision(s) did not apply"] if failed else []
        raise HistoryError(f"{' and '.join(said)}, on {done.where}")

    checks.append(run_check("rehearsal", rehearsed))
    for result in outcome.results if outcome else []:
        reports[result.script.revision].rehearsal = figures(result)
    checks.append(run_check("check-compat", lambda: check_compat(base, [])))
    checks.append(released)
    settings = {}
    if outcome is not None:
        settings = {
            "where": outcome.where,
            "max_wait_ms": outcome.max_wait_ms,
            "seeded_rows": outcome.seeded,
            "cut_by_max_rows": {
                table: {"production_rows": production, "seeded_rows": seeded}
                for table, (production, seeded) in outcome.cut.items()
            },
        }
    for report in reports.values():
        judge(report, outcome.max_wait_ms if outcome else None)
    return Report(base, list(reports.values()), checks, commits, settings)


def commit_of(ref: str) -> str:
    return git("rev-parse", "--short=12", ref + "^{commit}").stdout.strip()


def checkout_commit() -> str:
    """HEAD's commit, with "+" when the working tree differs from it."""
    head = commit_of("HEAD")
    changed = git("status", "--porcelain").stdout.strip()
    return f"{head}+" if changed else head


def title(script: Script) -> str:
    return (script.doc or "").strip().splitlines()[0] if script.doc else ""


def lint_finding(found: Finding) -> dict[str, str]:
    return {
        "rule": found.rule,
        "message": found.message,
        "statement": found.statement,
        "fix": found.fix,
    }


def lint_check(findings: list[Finding], linted: int) -> Check:
    if not findings:
        return Check("migration lint", True, [f"no findings in {linted} revision(s)"])
    rules = sorted({found.rule for found in findings})
    summary = f"{len(findings)} finding(s): {', '.join(rules)}"
    return Check("migration lint", False, [summary])


def figures(result: Rehearsed) -> dict[str, Any]:
    worst = result.worst
    return {
        "seconds": round(result.seconds, 3),
        "rows_written": result.rows_written,
        "traffic_waited_ms": result.waited_ms(),
        "traffic_waited_on": worst.table if worst else None,
        "locks": [
            {
                "table": held.table,
                "mode": lock_mode(held.mode),
                "longest_ms": round(held.longest * 1000),
                "transactions": held.transactions,
                "said": str(held),  # as the rehearsal prints it
            }
            for held in result.locks
        ],
        "rewrote": result.rewritten,
        "failure": result.failure,
    }


def judge(report: RevisionReport, max_wait_ms: int | None) -> None:
    """A revision's verdict: its lint findings, and what its rehearsal showed;
    one the rehearsal never reached fails too, as unproven."""
    for found in report.lint:
        report.reasons.append(f"lint: {found['rule']}")
    rehearsed = report.rehearsal
    if rehearsed is None or max_wait_ms is None:
        report.reasons.append("not rehearsed: the rehearsal stopped before it")
    else:
        waited = rehearsed["traffic_waited_ms"]
        if rehearsed["failure"] is not None:
            first_line = str(rehearsed["failure"]).splitlines()[0]
            report.reasons.append(f"did not apply in the rehearsal: {first_line}")
        elif waited > max_wait_ms:
            table = rehearsed["traffic_waited_on"]
            report.reasons.append(
                f"made traffic wait {waited:,} ms on {table} in the rehearsal, "
                f"over REHEARSAL_MAX_WAIT_MS ({max_wait_ms:,} ms); the README says how "
                "to split such work "
                + in_readme('("Rehearsing a deploy")', "(«Репетиция развёртывания»)")
            )
    report.passed = not report.reasons


def markdown(report: Report) -> str:
    count = len(report.revisions)
    lines = [f"# Migration report: {count} revision(s) that {report.base} lacks", ""]
    compared = report.commits
    checkout = f"`{compared['checkout'].removesuffix('+')}`"
    if compared["checkout"].endswith("+"):
        checkout += " with uncommitted changes"
    lines += [f"This checkout at {checkout}, against {report.base} at `{compared['base']}`.", ""]
    if not report.revisions:
        lines.append(f"No revision to rehearse or lint: {report.base} has every revision here.")
        lines.append("")
    if report.passed:
        lines.append("**Verdict: every check passes.**")
    else:
        lines.append("**Verdict: fails.**")
        lines += ["", *(f"- {reason}" for reason in report.reasons())]
    lines += ["", "| Check | Result |", "|---|---|"]
    for check in report.checks:
        outcome = "passed" if check.passed else "**failed**"
        said = check.lines[0].removeprefix(f"{check.name}: ")
        lines.append(f"| {check.name} | {outcome}: {cell(said)} |")
    for revision in report.revisions:
        verdict = "passes" if revision.passed else "fails"
        lines += ["", f"## {revision.revision} {revision.title}: {verdict}", ""]
        lines.append(f"`{revision.file}`")
        lines += [""] + [f"- **{reason}**" for reason in revision.reasons]
        lines += rehearsal_lines(revision.rehearsal)
        for found in revision.lint:
            lines.append(f"- lint `{found['rule']}`: {found['message']}")
            lines.append(f"  fix: {found['fix']}")
        lines += ["", "```sql", revision.sql, "```"]
    if seeded := report.rehearsal.get("seeded_rows"):
        held = ", ".join(f"{table} {rows:,}" for table, rows in seeded.items())
        lines += ["", f"*Rows in the rehearsal's tables: {held}.*"]
    for table, cut in report.rehearsal.get("cut_by_max_rows", {}).items():
        production, seeded = cut["production_rows"], cut["seeded_rows"]
        lines += [
            "",
            f"*{table} has {production:,} rows in production; the rehearsal seeded "
            f"{seeded:,} (REHEARSAL_STATS_MAX_ROWS), and its figures are for {seeded:,}.*",
        ]
    details = [check for check in report.checks if len(check.lines) > 1]
    for check in details:
        lines += ["", f"## {check.name}", "", "```text", *check.lines, "```"]
    return "\n".join(lines) + "\n"


def rehearsal_lines(rehearsed: dict[str, Any] | None) -> list[str]:
    if rehearsed is None:
        return ["- not rehearsed (the rehearsal stopped before it)"]
    waited = f"traffic waited at most {rehearsed['traffic_waited_ms']:,} ms"
    if rehearsed["traffic_waited_on"]:
        waited += f" ({rehearsed['traffic_waited_on']})"
    lines = [
        f"- rehearsal: {rehearsed['seconds']:.2f} s, "
        f"{rehearsed['rows_written']:,} rows written, {waited}"
    ]
    lines += [f"- {held['said']}" for held in rehearsed["locks"]]
    lines += [f"- rewrote {table} (every row copied)" for table in rehearsed["rewrote"]]
    return lines


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def as_json(report: Report) -> str:
    document = {
        "base": report.base,
        "commits": report.commits,
        "passed": report.passed,
        "rehearsal": report.rehearsal,
        "reasons": report.reasons(),
        "checks": [asdict(check) for check in report.checks],
        "revisions": [asdict(revision) for revision in report.revisions],
    }
    return json.dumps(document, indent=2) + "\n"


def main() -> None:
    parser = command_parser("report", __doc__)
    add_base_argument(parser, "to compare with")
    parser.add_argument(
        "--output",
        type=Path,
        help="folder for the report's two files (default: the service's)",
    )
    arguments = parser.parse_args()
    folder = arguments.output or project_root()
    written = [folder / f"{REPORT}.md", folder / f"{REPORT}.json"]
    # A run that stops before its report leaves no older one to be taken for it.
    for path in written:
        path.unlink(missing_ok=True)
    try:
        report = build_report(arguments.base)
    except CHECK_FAILED as error:
        sys.exit(f"make report: {error}")
    except UNREACHABLE as error:
        sys.exit(f"make report: {unreachable(error)}")
    text = markdown(report)
    folder.mkdir(parents=True, exist_ok=True)
    written[0].write_text(text)
    written[1].write_text(as_json(report))
    verdict = "every check passes" if report.passed else "fails"
    print(f"Migration report ({verdict}): {written[0]}, {written[1]}")
    for reason in report.reasons():
        print(f"  {reason}")
    share(text)
    sys.exit(0 if report.passed else 1)


def share(text: str) -> None:
    """The report where the CI run shows it: the GitHub job's summary page,
    and the pull or merge request's one report comment. A comment that cannot
    be posted is a warning: the checks' verdict stands."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as page:
            page.write(text)
    try:
        posted = publish(text, os.environ)
    except PublishError as error:
        warning = "::warning::" if os.environ.get("GITHUB_ACTIONS") == "true" else "WARNING: "
        print(f"{warning}the report is not on the review: {error}", file=sys.stderr)
        return
    if posted:
        print(posted)


if __name__ == "__main__":
    main()
