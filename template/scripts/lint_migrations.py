"""Lint the SQL of every revision for locking hazards, with squawk.

    uv run python -m scripts lint-migrations           # every revision
    uv run python -m scripts lint-migrations FILE ...  # these revision files
    uv run python -m scripts lint-migrations --head    # the newest revision

One Alembic run writes the upgrade SQL of the whole history (as `alembic
upgrade base:heads --sql` does), cut into one file per revision: squawk judges
each revision on its own, since in one long script every table looks newly
created and hazards on it go unseen. Each file starts with the session setup
that every run has (the lock and timeouts of migration_policy.py).

The rules and the PostgreSQL version are in .squawk.toml.
"""

import argparse
import io
import json
import logging
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypedDict

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQUAWK_CONFIG = PROJECT_ROOT / ".squawk.toml"
RUNNING_UPGRADE = re.compile(r"^-- Running upgrade .*-> (\S+)$", re.MULTILINE)
VERSION_STATEMENT = re.compile(
    r"^(INSERT INTO|UPDATE) alembic_version .*$",
    re.MULTILINE,
)
CREATE_DATE = re.compile(r"^Create Date: (\d{4}-\d{2}-\d{2})", re.MULTILINE)

# How each rule's fix is written in an Alembic revision. See the README,
# "Writing a safe migration".
ALEMBIC_FIXES = {
    "require-concurrent-index-creation": "build it CONCURRENTLY, outside the transaction: `with concurrent_index_block() as concurrently: op.create_index(..., postgresql_concurrently=concurrently)` (from revision_operations.py)",
    "require-concurrent-index-deletion": "`with concurrent_index_block() as concurrently: op.drop_index(..., postgresql_concurrently=concurrently)` (from revision_operations.py)",
    "changing-column-type": "the table is rewritten under an exclusive lock. A renamed enum value: `op.execute(\"ALTER TYPE t RENAME VALUE 'old' TO 'new'\")` rewrites nothing. A removed one needs the rewrite: once no row holds the value, list the revision in .squawk.toml excluded_paths, with the reason",
    "prefer-robust-stmts": "nothing in an autocommit block is rolled back, and a failed CONCURRENTLY build leaves an INVALID index: run `op.drop_index(..., postgresql_concurrently=True, if_exists=True)` before `op.create_index(..., postgresql_concurrently=True, if_not_exists=True)`",
    "disallowed-unique-constraint": 'create a unique index CONCURRENTLY in an autocommit block, then `op.execute("ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX c")`',
    "constraint-missing-not-valid": 'add it NOT VALID (`postgresql_not_valid=True`), then `op.execute("ALTER TABLE t VALIDATE CONSTRAINT c")` in the next revision',
    "adding-required-field": "add the column nullable, backfill it, then make it NOT NULL in a later revision",
    "adding-not-nullable-field": "add a CHECK (column IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL: PostgreSQL uses the valid check instead of a scan",
    "prefer-bigint-over-int": "`Mapped[int]` on the Base of models/base.py",
    "prefer-identity": "`Mapped[IdentityKey]` from models/base.py",
    "prefer-text-field": "`Mapped[str]` (text) on the Base of models/base.py",
}


class SquawkReport(TypedDict):
    """One entry of `squawk --reporter json` (lines count from 0)."""

    file: str
    line: int
    line_end: int
    rule_name: str
    message: str
    help: str | None


@dataclass
class Finding:
    revision_file: Path
    rule: str
    message: str
    fix: str
    statement: str

    def __str__(self) -> str:
        where = self.revision_file
        if where.is_relative_to(PROJECT_ROOT):
            where = where.relative_to(PROJECT_ROOT)
        lines = [
            f"{where}: {self.rule}: {self.message}",
            f"    {self.statement}",
            f"    fix: {self.fix}",
        ]
        return "\n".join(lines)


def revision_bodies(config: Config) -> tuple[str, dict[str, str]]:
    """The session setup of every run, and each revision's own upgrade SQL."""
    output = io.StringIO()
    config.output_buffer = output
    # Alembic's INFO lines would bury the findings.
    logging.disable(logging.INFO)
    try:
        command.upgrade(config, "base:heads", sql=True)
    finally:
        logging.disable(logging.NOTSET)
    script = output.getvalue()
    markers = list(RUNNING_UPGRADE.finditer(script))
    if not markers:
        return script, {}
    setup = script[: markers[0].start()].split("BEGIN;")[0]
    bodies = {}
    for marker, following in zip(markers, [*markers[1:], None], strict=True):
        end = following.start() if following else len(script)
        body = script[marker.end() : end]
        # Up to the revision's own version update; after the last one come
        # the run's COMMIT and the end of the session.
        last_version = list(VERSION_STATEMENT.finditer(body))[-1]
        bodies[marker.group(1)] = body[: last_version.end()]
    return setup, bodies


def revision_sql(config: Config) -> dict[str, str]:
    """Each revision's upgrade SQL, as a script of its own."""
    setup, bodies = revision_bodies(config)
    scripts = {}
    for revision, body in bodies.items():
        scripts[revision] = f"{setup}BEGIN;\n{body}\n\nCOMMIT;\n"
    return scripts


def linted_after() -> date | None:
    """The day a service updated from an older template took the lint on."""
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    section = pyproject.get("tool", {}).get("lint-migrations", {})
    day = section.get("linted-after")
    return date.fromisoformat(day) if day else None


def excluded_paths() -> list[str]:
    """Squawk applies them too, but says no more than "no files" when it
    excludes every file it was given."""
    squawk_config = tomllib.loads(SQUAWK_CONFIG.read_text())
    patterns: list[str] = squawk_config.get("excluded_paths", [])
    return patterns


def predates_lint(revision: Script, baseline: date | None) -> bool:
    created = CREATE_DATE.search(revision.longdoc or "")
    if baseline is None or created is None:
        return False
    return date.fromisoformat(created[1]) <= baseline


@dataclass
class LintReport:
    linted: list[Path]
    findings: list[Finding]

    def __str__(self) -> str:
        lines = [str(found) for found in self.findings]
        files = {found.revision_file for found in self.findings}
        count = f"{len(self.findings)} finding(s) in {len(files)} revision(s)"
        if not self.findings:
            count = "no findings"
        revisions = f"{len(self.linted)} revision(s) linted"
        lines.append(f"Migration lint: {count} ({revisions})")
        return "\n".join(lines)


def lint(
    revision_files: list[Path] | None = None,
    head: bool = False,
    config: Config | None = None,
) -> LintReport:
    """These revisions (default: all) of this config's history, linted."""
    config = config or Config(PROJECT_ROOT / "alembic.ini")
    scripts = ScriptDirectory.from_config(config)
    wanted = {path.resolve() for path in revision_files or []}
    baseline = linted_after()
    chosen: dict[str, Script] = {}
    for revision in scripts.walk_revisions():
        path = Path(revision.path).resolve()
        if head and not revision.is_head:
            continue
        if revision_files is not None and path not in wanted:
            continue
        if not predates_lint(revision, baseline):
            chosen[revision.revision] = revision
    if not chosen:
        return LintReport(linted=[], findings=[])
    sql = revision_sql(config)
    excluded = excluded_paths()
    with tempfile.TemporaryDirectory(prefix="lint-migrations-") as folder:
        files = {}
        for revision_id, revision in chosen.items():
            # Named like the revision, so that excluded_paths can name it.
            sql_file = Path(folder) / (Path(revision.path).stem + ".sql")
            if any(sql_file.match(pattern) for pattern in excluded):
                continue
            sql_file.write_text(sql[revision_id])
            files[str(sql_file)] = revision
        linted = [Path(revision.path).resolve() for revision in files.values()]
        if not files:
            return LintReport(linted=linted, findings=[])
        findings = []
        for report in run_squawk(list(files)):
            revision_file = Path(files[report["file"]].path).resolve()
            findings.append(finding(report, revision_file))
        return LintReport(linted=linted, findings=findings)


def run_squawk(sql_files: list[str]) -> list[SquawkReport]:
    squawk = Path(sys.executable).with_name("squawk")
    result = subprocess.run(
        [
            str(squawk) if squawk.exists() else "squawk",
            "--config",
            str(SQUAWK_CONFIG),
            "--reporter",
            "json",
            *sql_files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout.startswith("["):
        raise SystemExit(f"squawk failed:\n{result.stdout}{result.stderr}")
    reports: list[SquawkReport] = json.loads(result.stdout)
    return reports


def finding(report: SquawkReport, revision_file: Path) -> Finding:
    rule = report["rule_name"]
    lines = Path(report["file"]).read_text().splitlines()
    statement = " ".join(lines[report["line"] : report["line_end"] + 1])
    help_text = report["help"] or f"https://squawkhq.com/docs/{rule}"
    return Finding(
        revision_file=revision_file,
        rule=rule,
        message=report["message"],
        fix=ALEMBIC_FIXES.get(rule, help_text),
        statement=" ".join(statement.split())[:200],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="revision files")
    parser.add_argument("--head", action="store_true", help="the newest only")
    options = parser.parse_args()
    report = lint(options.files or None, head=options.head)
    print(report)
    if report.findings:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
