"""Every revision passes the migration lint (alembic-rollout lint-migrations)."""

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic_rollout.commands.lint_migrations import (
    excluded_paths,
    lint,
    linted_after,
    predates_lint,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_every_revision_passes_the_migration_lint() -> None:
    report = lint()

    assert not report.findings, str(report)
    # Every revision was linted, but those that .squawk.toml excludes or
    # that predate the lint (pyproject.toml, [tool.lint-migrations]).
    scripts = ScriptDirectory.from_config(Config(PROJECT_ROOT / "alembic.ini"))
    excluded = excluded_paths()
    baseline = linted_after()
    expected = []
    for revision in scripts.walk_revisions():
        path = Path(revision.path).resolve()
        sql_name = path.with_suffix(".sql")
        if predates_lint(revision, baseline):
            continue
        if not any(sql_name.match(pattern) for pattern in excluded):
            expected.append(path)
    assert sorted(report.linted) == sorted(expected)
