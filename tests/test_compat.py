"""`make check-compat`: the released code's own tests, on the schema of a branch.

One fastapi service with the example models and its uv.lock, in services/hotels/
of a git repository, with `main` (tagged v1) as the release.
Each case is a branch with one revision after the shipped head: a dropped column
breaks the release's models, which its tests say by name; a new nullable column does
not. (A rename breaks them the same way: the release's query names a column that the
new schema lacks.) A release whose own tests fail is said to be broken, not
the branch; that release is a v0.8.0 render, with that release's fixtures. The
failing cases run the release's model tests only (the plugin, the deselection and
the baseline run are the same for any selection); the passing one runs every test
of the release's code, as CI does. A contract step passes the migration lint only
when its revision declares it, rule by rule, with a reason.
"""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from copier import run_copy, run_update
from sqlalchemy import URL

from tests.git_repository import (
    commit_all,
    git,
    init_monorepo,
    init_repository,
    replace_once,
)
from tests.rendering import TEMPLATE_ROOT, lock_dependencies, release_commit, render_service
from tests.revision_files import Revision
from tests.service_suite import service_command

pytestmark = pytest.mark.reliability
MODEL_TESTS = "tests/test_models.py"
DROP_LOCATION = Revision(
    "d1d1d1d1d1d1",
    "Drop hotels.location",
    ['op.drop_column("hotels", "location")'],
    ['op.add_column("hotels", sa.Column("location", sa.Text()))'],
)
ADD_STARS = Revision(
    "f3f3f3f3f3f3",
    "Add hotels.stars",
    ['op.add_column("hotels", sa.Column("stars", sa.Integer()))'],
    ['op.drop_column("hotels", "stars")'],
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    monorepo = tmp_path_factory.mktemp("compat")
    project = render_service(monorepo / "services" / "hotels", web_framework="fastapi")
    lock_dependencies(project)
    init_monorepo(project)
    yield project


def branch_with(project: Path, name: str, revision: Revision, base: str = "main") -> None:
    git(project, "checkout", "-q", "-B", name, base)
    revision.write(project, name)
    commit_all(project, revision.message)


def check_compat(
    project: Path, server_url: URL, base: str, *tests: str
) -> subprocess.CompletedProcess[str]:
    test_database = server_url.render_as_string(hide_password=False)
    return service_command(
        project, "check-compat", "--base", base, *tests, TEST_DATABASE_URL=test_database
    )


def code_test_count(project: Path) -> int:
    """The service's tests outside tests/test_migration*.py."""
    code_tests = [
        str(path.relative_to(project))
        for path in project.glob("tests/test_*.py")
        if not path.name.startswith("test_migration")
    ]
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *code_tests],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return sum("::" in line for line in collected.stdout.splitlines())


def test_a_drop_breaks_the_release_and_a_new_column_does_not(
    service: Path, postgres_server_url: URL
) -> None:
    branch_with(service, "drop-location", DROP_LOCATION)
    dropped = check_compat(service, postgres_server_url, "main", MODEL_TESTS)
    assert dropped.returncode == 1, dropped.stdout + dropped.stderr
    assert "breaks on the schema of revision d1d1d1d1d1d1" in dropped.stderr
    assert "tests/test_models.py::test_hotel_with_rooms_round_trip" in dropped.stderr
    assert "test_ready_at_the_head" not in dropped.stderr
    # Each failure says why, in its first line: the column the release still uses.
    assert '"location"' in dropped.stderr.split("round_trip: ", 1)[1].splitlines()[0]

    branch_with(service, "add-stars", ADD_STARS)
    added = check_compat(service, postgres_server_url, "v1")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "Compatible: the " in added.stdout and "(revision f3f3f3f3f3f3)" in added.stdout
    # Every test of the release's code ran, but the two that check its /ready at
    # its own head: the API's, the models' and the fuzzer's.
    assert f"Compatible: the {code_test_count(service) - 2} tests" in added.stdout
    assert git(service, "worktree", "list").count("\n") == 1

    # A test path that names nothing is no pass, and a test name that matches nothing
    # runs nothing.
    mistyped = check_compat(service, postgres_server_url, "main", "tests/test_modles.py")
    assert mistyped.returncode == 1, mistyped.stdout + mistyped.stderr
    assert "main has no such tests: tests/test_modles.py" in mistyped.stderr
    unknown = f"{MODEL_TESTS}::test_no_such_test"
    misnamed = check_compat(service, postgres_server_url, "main", unknown)
    assert misnamed.returncode == 1, misnamed.stdout + misnamed.stderr
    assert f"none of these tests of main ran: {unknown}" in misnamed.stderr


def test_a_v0_8_0_release_whose_own_test_fails_is_named_broken(
    tmp_path: Path, postgres_server_url: URL
) -> None:
    """A base rendered by v0.8.0, with the fixtures of that release, checked by a
    branch that `copier update` brought to this template."""
    service = tmp_path / "service"
    run_copy(
        str(TEMPLATE_ROOT),
        service,
        data={"web_framework": "fastapi"},
        defaults=True,
        quiet=True,
        vcs_ref=release_commit("v0.8.0"),
    )
    replace_once(
        service / MODEL_TESTS,
        "async def test_hotel_with_rooms_round_trip(session: AsyncSession) -> None:\n",
        "async def test_hotel_with_rooms_round_trip(session: AsyncSession) -> None:\n"
        "    assert False\n",
    )
    lock_dependencies(service)
    init_repository(service)
    git(service, "checkout", "-q", "-b", "updated")
    run_update(service, vcs_ref="HEAD", defaults=True, overwrite=True, quiet=True)
    commit_all(service, "copier update")
    branch_with(service, "drop-location", DROP_LOCATION, base="updated")

    checked = check_compat(service, postgres_server_url, "main", MODEL_TESTS)

    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "fail on main's own schema as well" in checked.stderr
    assert f"{MODEL_TESTS}::test_hotel_with_rooms_round_trip" in checked.stderr
    assert "breaks on the schema" not in checked.stderr


def lint_newest(project: Path) -> subprocess.CompletedProcess[str]:
    return service_command(project, "lint-migrations", "--head", timeout=120)


def test_a_contract_step_is_declared_in_its_revision_with_a_reason(service: Path) -> None:
    branch_with(service, "contract-location", DROP_LOCATION)
    (revision,) = service.rglob(f"versions/{DROP_LOCATION.revision}_*.py")

    refused = lint_newest(service)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert ": ban-drop-column: " in refused.stdout
    assert 'see "Changing what live code uses" in the README' in refused.stdout
    assert 'contract_step = {"ban-drop-column": ' in refused.stdout
    assert "The new revision is refused as written" in refused.stdout

    declared = 'contract_step = {"ban-drop-column": "v1.4 stopped reading it"}\n'
    replace_once(revision, "depends_on = None\n", f"depends_on = None\n{declared}")
    passed = lint_newest(service)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "declared contract step, ban-drop-column: v1.4 stopped reading it" in passed.stdout
    assert "no findings" in passed.stdout

    replace_once(revision, '"v1.4 stopped reading it"', '" "')
    unexplained = lint_newest(service)
    assert unexplained.returncode == 1
    assert "contract-step-without-reason" in unexplained.stdout

    # A set of rules, with no reasons, is no declaration either.
    replace_once(revision, '{"ban-drop-column": " "}', '{"ban-drop-column"}')
    undeclared = lint_newest(service)
    assert undeclared.returncode == 1
    assert "contract_step is not a dict of each rule and its reason" in undeclared.stdout
    assert ": ban-drop-column: " in undeclared.stdout
