"""`make check-compat [base=REF]`: the code of REF, which still serves during
a rollout, against the schema of this checkout.

REF's tests of its code (models, queries, the API: every test outside
`tests/test_migration*.py`) run in a git worktree of REF, with REF's own
fixtures and dependencies (`uv sync` there). Each database they migrate to
"head" is migrated by this checkout's revisions instead: a plugin replaces
`alembic.command.upgrade` in REF's test process and hands the database to
one process of this checkout (commands/compat_migrations.py), so that the
two codebases never share an import path. REF defaults to what `make
rehearse` compares with: the upstream main branch, else the latest tag.

A test that fails is run again on REF's own schema: one that fails there
too is REF's own failure, not the new revisions'.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

from alembic_rollout.revision_history import (
    HistoryError,
    add_base_argument,
    command_parser,
    default_base,
    git,
    heads_at,
    new_revisions,
    run_command,
    script_directory,
    service_prefix,
)
from alembic_rollout.service import in_readme, project_root

# REF's tests that check where the database is in REF's own history: a newer
# schema fails them by design.
POSITION_TESTS = (
    "test_ready_at_the_head",
    "test_ready_refuses_a_database_behind_the_head",
)
# What a failed junit test case holds.
FAILED = ("failure", "error")
# compat_plugin/check_compat_plugin.py, loaded by the base's pytest.
PLUGIN = "check_compat_plugin"


def check_compat(base: str | None, tests: list[str]) -> list[str]:
    scripts = script_directory()
    base = base or default_base()
    revisions = new_revisions(scripts, heads_at(base, scripts))
    if not revisions:
        return [f"Nothing to check: {base} has every revision here."]
    ids = ", ".join(script.revision for script in revisions)
    new = f"revision{'s' if len(revisions) > 1 else ''} {ids}"
    with (
        tempfile.TemporaryDirectory(prefix="check-compat-") as folder,
        worktree(base, Path(folder) / "base") as code,
    ):
        # Before the install, which takes seconds: a mistyped path would run nothing.
        missing = [test for test in tests if not (code / test.split("::", 1)[0]).exists()]
        if missing:
            raise HistoryError(f"{base} has no such tests: {' '.join(missing)}")
        notes = install(code)
        plugin = Path(__file__).parent.parent / "compat_plugin"
        report = Path(folder) / "report.xml"
        selected = tests or code_tests(code)
        count, failed = run_tests(code, report, plugin, selected)
        if count == 0:
            chosen = " ".join(selected)
            raise HistoryError(f"none of these tests of {base} ran: {chosen}")
        if not failed:
            compatible = [
                f"Compatible: the {count} tests of {base}'s code pass on the",
                f"schema of this checkout ({new}).",
            ]
            return [*notes, " ".join(compatible)]
        rerun = sorted({test.split("[", 1)[0] for test in failed})
        count_at_base, failed_at_base = run_tests(code, report, None, rerun)
    if count_at_base < len(rerun):
        message = [
            f"could not run the failed tests again on {base}'s own schema:",
            *rerun,
        ]
        raise HistoryError("\n  ".join(message))
    if failed_at_base:
        message = [
            f"these tests of {base} fail on {base}'s own schema as well, so",
            f"they cannot judge the new revisions; fix them on {base}:",
        ]
        raise HistoryError(" ".join(message) + listed(failed_at_base))
    message = [
        f"the code of {base}, still serving during a rollout, breaks on the",
        f"schema of {new}. These tests of {base} fail, and pass on",
        f"{base}'s own schema:",
    ]
    advice = in_readme(
        'See "Changing what live code uses" in the README.',
        "См. «Изменения, которые видит работающий код» в README.",
    )
    explained = [listed(failed), advice, *notes]
    raise HistoryError(" ".join(message) + "\n".join(explained))


def listed(failures: dict[str, str]) -> str:
    return "".join(f"\n  {test}: {why}" for test, why in failures.items())


@contextmanager
def worktree(ref: str, folder: Path) -> Iterator[Path]:
    """REF checked out beside this checkout; the service's folder in it."""
    added = git("worktree", "add", "--detach", "--quiet", str(folder), ref)
    if added.returncode:
        raise HistoryError(f"cannot check out {ref}: {added.stderr.strip()}")
    try:
        yield folder / service_prefix()
    finally:
        git("worktree", "remove", "--force", str(folder))


def install(code: Path) -> list[str]:
    """REF's own dependencies, as its lock file pins them; a note when it
    has none."""
    uv = shutil.which("uv")
    if uv is None:
        raise HistoryError("needs uv, to install the base's dependencies")
    frozen = ["--frozen"] if (code / "uv.lock").exists() else []
    synced = subprocess.run(
        [uv, "sync", "--quiet", *frozen],
        cwd=code,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if synced.returncode:
        failure = synced.stderr.strip()
        raise HistoryError(f"uv sync failed in the base: {failure}")
    if frozen:
        return []
    return ["The base has no uv.lock: its dependencies were resolved anew."]


def code_tests(code: Path) -> list[str]:
    """REF's tests of its code: the migration tests check REF's own history
    against REF's own models, which the new revisions do not change."""
    tests = sorted(
        path.relative_to(code).as_posix()
        for path in (code / "tests").glob("test_*.py")
        if not path.name.startswith("test_migration")
    )
    if not tests:
        raise HistoryError("the base has no tests of its code (tests/)")
    return tests


def run_tests(
    code: Path,
    report: Path,
    plugin: Path | None,
    tests: list[str],
) -> tuple[int, dict[str, str]]:
    """How many of `tests` ran, and those that failed (subtests included),
    each with the first line of its failure."""
    env = environment()
    deselected = " and ".join(f"not {test}" for test in POSITION_TESTS)
    command = [
        str(code / ".venv" / "bin" / "python"),
        *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", deselected),
        f"--junit-xml={report}",
    ]
    if plugin is not None:
        command += ["-p", PLUGIN]
        env["PYTHONPATH"] = str(plugin)
        env["CHECK_COMPAT_PYTHON"] = sys.executable
        env["CHECK_COMPAT_ROOT"] = str(project_root())
    ran = subprocess.run(
        [*command, *tests],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if not report.exists():
        output = ran.stdout + ran.stderr
        raise HistoryError(f"the base's tests did not run:\n{output}")
    testcases = ElementTree.parse(report).getroot().iter("testcase")
    cases = {test_id(case): failure(case) for case in testcases}
    report.unlink()
    tests_run = {owning_test(test, cases) for test in cases}
    failed = {test: why for test, why in cases.items() if why is not None}
    return len(tests_run), failed


def test_id(case: ElementTree.Element) -> str:
    """The pytest node id of a junit test case."""
    module = str(case.get("classname")).replace(".", "/")
    return f"{module}.py::{case.get('name')}"


def failure(case: ElementTree.Element) -> str | None:
    """The first line of why the test failed, or None when it passed."""
    for outcome in FAILED:
        found = case.find(outcome)
        if found is not None:
            lines = (found.get("message") or "").strip().splitlines()
            return (lines or [outcome])[0][:200]
    return None


def owning_test(test: str, cases: dict[str, str | None]) -> str:
    """The test itself, for a subtest (`test[case]` reported beside `test`)."""
    parent = test.split("[", 1)[0]
    return parent if parent in cases else test


def environment() -> dict[str, str]:
    """This process's, without this checkout's virtual environment."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    return env


def main() -> None:
    parser = command_parser("check-compat", __doc__)
    add_base_argument(parser, "whose code runs")
    parser.add_argument(
        "tests",
        nargs="*",
        help="the base's tests to run (default: all but the migration tests)",
    )
    arguments = parser.parse_args()
    run_command(
        "make check-compat",
        lambda: check_compat(arguments.base, arguments.tests),
    )


if __name__ == "__main__":
    main()
