"""Every revision passes the migration lint (scripts/lint_migrations.py)."""

from scripts.lint_migrations import lint


def test_every_revision_passes_the_migration_lint() -> None:
    findings = lint()

    assert not findings, "\n".join(str(finding) for finding in findings)
