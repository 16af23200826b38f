"""Lint the SQL of every revision for locking hazards, with squawk.

    uv run alembic-rollout lint-migrations           # every revision
    uv run alembic-rollout lint-migrations FILE ...  # these revision files
    uv run alembic-rollout lint-migrations --head    # the newest revision

One Alembic run writes the upgrade SQL of the whole history (as `alembic
upgrade base:heads --sql` does), cut into one file per revision: squawk judges
each revision on its own, since in one long script every table looks newly
created and hazards on it go unseen. Each file starts with the session setup
that every run has (the lock and timeouts of migration_policy.py).

The rules and the PostgreSQL version are in .squawk.toml. A revision that
breaks a rule on purpose, a contract step whose column or table the serving
code no longer uses, says so itself, rule by rule, with the reason:

    contract_step = {"ban-drop-column": "v1.4 stopped reading it"}

Each declared rule becomes squawk's own `-- squawk-ignore-file` comment in
that revision's SQL, and the report lists it with its reason.
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
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypedDict

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from alembic_rollout.service import in_readme, project_root, pyproject

SQUAWK_CONFIG = ".squawk.toml"
RUNNING_UPGRADE = re.compile(r"^-- Running upgrade .*-> (\S+)$", re.MULTILINE)
VERSION_STATEMENT = re.compile(
    r"^(INSERT INTO|UPDATE) alembic_version .*$",
    re.MULTILINE,
)
CREATE_DATE = re.compile(r"^Create Date: (\d{4}-\d{2}-\d{2})", re.MULTILINE)

# What the running release cannot live with, and where the README says what
# to do instead, and how a deliberate contract step is declared.
README_SECTION = in_readme(
    '"Changing what live code uses"',
    "«Изменения, которые видит работающий код»",
)
CONTRACT = (
    f"the release still serving breaks on it: see {README_SECTION} in the "
    "README (`make check-compat` shows it). Once the code no longer uses "
    "it, declare the contract step in the revision: "
)
CONTRACT_RULES = (
    "ban-drop-column",
    "ban-drop-table",
    "renaming-column",
    "renaming-table",
)

# How each rule's fix is written in an Alembic revision. See the README,
# "Writing a safe migration".
ALEMBIC_FIXES = {
    "require-concurrent-index-creation": "build it CONCURRENTLY, outside the transaction: `with concurrent_index_block() as concurrently: op.create_index(..., postgresql_concurrently=concurrently)` (from alembic_rollout)",
    "require-concurrent-index-deletion": "`with concurrent_index_block() as concurrently: op.drop_index(..., postgresql_concurrently=concurrently)` (from alembic_rollout)",
    "changing-column-type": f"the table is rewritten under an exclusive lock, and the serving release may not read the new type: add a column of the new type instead (README: {README_SECTION}). A renamed enum value: `op.execute(\"ALTER TYPE t RENAME VALUE 'old' TO 'new'\")` rewrites nothing. A removed one needs the rewrite: once no row holds the value, declare it in the revision's contract_step, with the reason",
    "prefer-robust-stmts": "nothing in an autocommit block is rolled back, and a failed CONCURRENTLY build leaves an INVALID index: run `op.drop_index(..., postgresql_concurrently=True, if_exists=True)` before `op.create_index(..., postgresql_concurrently=True, if_not_exists=True)`",
    "disallowed-unique-constraint": 'create a unique index CONCURRENTLY in an autocommit block, then `op.execute("ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX c")`',
    "constraint-missing-not-valid": 'add it NOT VALID (`postgresql_not_valid=True`), then `op.execute("ALTER TABLE t VALIDATE CONSTRAINT c")` in the next revision',
    "adding-required-field": f"add the column nullable, backfill it, then make it NOT NULL in a later release (README: {README_SECTION})",
    "adding-not-nullable-field": f"add a CHECK (column IS NOT NULL) NOT VALID in one revision; in the next, VALIDATE it, SET NOT NULL (PostgreSQL uses the valid check instead of a scan), then drop the check, declared (README: {README_SECTION})",
    "ban-drop-not-null": f"the serving release reads the NULLs that the new code writes: give the column a default it can read instead (`op.alter_column(..., server_default=...)`). Once no serving code reads it, declare the step in the revision's contract_step, with the reason (README: {README_SECTION})",
    "ban-drop-constraint": f"a check that only let SET NOT NULL skip its scan can go once the column is NOT NULL: declare it in the revision's contract_step, with the reason (README: {README_SECTION}). Any other constraint: is the guarantee still needed?",
    "prefer-bigint-over-int": "declare it `Mapped[int]`: the models' Base (models/base.py) maps int to BIGINT",
    "prefer-identity": "declare the key `Mapped[IdentityKey]`, from the models' base.py",
    "prefer-text-field": "declare it `Mapped[str]`: the models' Base (models/base.py) maps str to TEXT",
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
        lines = [
            f"{shown(self.revision_file)}: {self.rule}: {self.message}",
            f"    {self.statement}",
            f"    fix: {self.fix}",
        ]
        return "\n".join(lines)


def shown(path: Path) -> Path:
    if path.is_relative_to(project_root()):
        return path.relative_to(project_root())
    return path


def contract_step(revision: Script) -> dict[str, str] | None:
    """The rules this revision breaks on purpose, and why (`contract_step`);
    None when it is not a dict of rule and reason."""
    declared = getattr(revision.module, "contract_step", {})
    if not isinstance(declared, dict):
        return None
    reasons = {}
    for rule, reason in declared.items():
        reasons[str(rule)] = str(reason).strip()
    return reasons


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


def revision_sql(
    config: Config, bodies: tuple[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """Each revision's upgrade SQL, as a script of its own; from `bodies`
    when the caller has them (revision_bodies' one Alembic run)."""
    setup, bodies_by_revision = bodies or revision_bodies(config)
    scripts = {}
    for revision, body in bodies_by_revision.items():
        scripts[revision] = f"{setup}BEGIN;\n{body}\n\nCOMMIT;\n"
    return scripts


def linted_after() -> date | None:
    """The day a service updated from an older template took the lint on."""
    section = pyproject().get("tool", {}).get("lint-migrations", {})
    day = section.get("linted-after")
    return date.fromisoformat(day) if day else None


def excluded_paths() -> list[str]:
    """Squawk applies them too, but says no more than "no files" when it
    excludes every file it was given."""
    squawk_config = tomllib.loads((project_root() / SQUAWK_CONFIG).read_text())
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
    # Revision file -> rule -> reason, as each revision declares it.
    contract_steps: dict[Path, dict[str, str]] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"{shown(path)}: declared contract step, {rule}: {reason}"
            for path, declared in self.contract_steps.items()
            for rule, reason in declared.items()
            if reason
        ]
        lines += [str(found) for found in self.findings]
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
    bodies: tuple[str, dict[str, str]] | None = None,
) -> LintReport:
    """These revisions (default: all) of this config's history, linted;
    from `bodies` when the caller has already run revision_bodies()."""
    config = config or Config(project_root() / "alembic.ini")
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
    sql = revision_sql(config, bodies)
    excluded = excluded_paths()
    steps: dict[Path, dict[str, str]] = {}
    findings = []
    with tempfile.TemporaryDirectory(prefix="lint-migrations-") as folder:
        files = {}
        for revision_id, revision in chosen.items():
            # Named like the revision, so that excluded_paths can name it.
            sql_file = Path(folder) / (Path(revision.path).stem + ".sql")
            if any(sql_file.match(pattern) for pattern in excluded):
                continue
            revision_file = Path(revision.path).resolve()
            declared = contract_step(revision)
            if declared is None:
                findings.append(malformed_step(revision_file))
                declared = {}
            if declared:
                steps[revision_file] = declared
            for rule, reason in declared.items():
                if not reason:
                    findings.append(unexplained_step(revision_file, rule))
            ignored = [f"-- squawk-ignore-file {rule}\n" for rule in declared]
            sql_file.write_text("".join(ignored) + sql[revision_id])
            files[str(sql_file)] = revision
        linted = [Path(revision.path).resolve() for revision in files.values()]
        if files:
            for report in run_squawk(list(files)):
                revision_file = Path(files[report["file"]].path).resolve()
                findings.append(finding(report, revision_file))
    return LintReport(linted=linted, findings=findings, contract_steps=steps)


def declaration(rule: str, reason: str) -> str:
    return "contract_step = " + json.dumps({rule: reason})


def malformed_step(revision_file: Path) -> Finding:
    return Finding(
        revision_file=revision_file,
        rule="contract-step-without-reason",
        message="contract_step is not a dict of each rule and its reason",
        fix="name each rule the revision breaks on purpose, with the reason",
        statement=declaration("ban-drop-column", "<why it is safe now>"),
    )


def unexplained_step(revision_file: Path, rule: str) -> Finding:
    return Finding(
        revision_file=revision_file,
        rule="contract-step-without-reason",
        message=f"contract_step declares {rule} without a reason",
        fix="say why the serving code no longer needs what it removes",
        statement=declaration(rule, ""),
    )


def run_squawk(sql_files: list[str]) -> list[SquawkReport]:
    squawk = Path(sys.executable).with_name("squawk")
    result = subprocess.run(
        [
            str(squawk) if squawk.exists() else "squawk",
            "--config",
            str(project_root() / SQUAWK_CONFIG),
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
    if rule in CONTRACT_RULES:
        help_text = CONTRACT + declaration(rule, "<why it is safe now>")
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
    if report.findings and options.head:
        # `make revision` lints the file it has just written.
        print(
            "The new revision is refused as written: edit it as the fixes say,"
            " or delete it and run `uv run alembic-rollout record-head`."
        )
    if report.findings:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
