"""alembic_rollout.commands.report: the verdict and its reasons, as a reviewer
reads them, when a check could not run at all."""

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic_rollout import service


@pytest.fixture(autouse=True)
def in_a_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The commands read the service's folder (its README's language) on import."""
    (tmp_path / "alembic.ini").write_text("[alembic]\n")
    (tmp_path / "pyproject.toml").write_text('[tool.alembic-rollout]\npackage = "src"\n')
    monkeypatch.chdir(tmp_path)
    service.project_root.cache_clear()
    service.pyproject.cache_clear()
    yield
    service.project_root.cache_clear()
    service.pyproject.cache_clear()


def test_a_rehearsal_that_never_started_is_a_reason_and_its_revisions_are_unproven() -> None:
    report_module = importlib.import_module("alembic_rollout.commands.report")
    Check, Report = report_module.Check, report_module.Report
    RevisionReport, judge, markdown = (
        report_module.RevisionReport,
        report_module.judge,
        report_module.markdown,
    )
    revision = RevisionReport("a1a1a1a1a1a1", "Add rating", "versions/a1.py", "ALTER TABLE ...")
    judge(revision, max_wait_ms=None)
    refused = "PostgreSQL: [Errno 111] Connect call failed ('127.0.0.1', 1)"
    report = Report(
        "main",
        [revision],
        [
            Check("migration lint", True, ["no findings in 1 revision(s)"]),
            Check("rehearsal", False, [refused]),
            Check("check-released", True, ["the 4 revisions of main are unchanged."]),
        ],
        {"base": "0123456789ab", "checkout": "ba9876543210+"},
    )

    assert not revision.passed and not report.passed
    assert report.reasons() == [
        "a1a1a1a1a1a1: not rehearsed: the rehearsal stopped before it",
        f"rehearsal: {refused}",
    ]
    shown = markdown(report)
    assert shown.startswith(
        "# Migration report: 1 revision(s) that main lacks\n\n"
        "This checkout at `ba9876543210` with uncommitted changes, against main at "
        "`0123456789ab`.\n\n**Verdict: fails.**\n\n"
        "- a1a1a1a1a1a1: not rehearsed: the rehearsal stopped before it\n"
        f"- rehearsal: {refused}\n"
    )
    assert "## a1a1a1a1a1a1 Add rating: fails" in shown
    assert "| rehearsal | **failed**: PostgreSQL: [Errno 111]" in shown
