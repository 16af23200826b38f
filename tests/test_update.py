"""`copier update` on services that already exist and have their own work.

Done the way Copier tests itself: a temporary git repository of the template,
tagged, rendered into a service committed to git, changed and tagged again,
then `run_update`.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update
from sqlalchemy import URL

from tests.alembic_cli import Alembic
from tests.git_repository import commit_all, git, identity, replace_once
from tests.postgres import log_rows
from tests.rendering import (
    TEMPLATE_ROOT,
    add_bookings_model,
    copy_template,
    release_commit,
    release_commits,
    release_commits_by_kind,
    render_service,
)
from tests.revision_files import Revision
from tests.service_suite import run_service_tests

EXAMPLE_REVISIONS = 4
# A line that `copier update` added to start an inline conflict.
CONFLICT_MARKER = re.compile(r"^\+<<<<<<< ", re.MULTILINE)
REVISION_ID = re.compile(r"^revision(?:: str)? = [\"'](\w+)", re.MULTILINE)


@pytest.fixture
def template_repository(tmp_path: Path) -> Path:
    """This working tree's template as a git repository tagged v0.1.0."""
    repository = copy_template(tmp_path / "template-repository")
    git(repository, "init", "-q")
    git(repository, "config", "user.email", "template@example.com")
    git(repository, "config", "user.name", "Template")
    commit_all(repository, "Release 0.1.0")
    git(repository, "tag", "v0.1.0")
    return repository


def readme_render_command(readme: str) -> str:
    """The first line of the template README's first code block, without its comment."""
    block = readme.split("```bash\n", 1)[1]
    command = block.splitlines()[0].split("#", 1)[0].strip()
    assert command.startswith("uvx copier copy ")
    return command


def release(repository: Path, tag: str) -> None:
    commit_all(repository, f"Release {tag}")
    git(repository, "tag", tag)


def render_committed_service(
    template: Path, destination: Path, vcs_ref: str | None = None, **answers: object
) -> Path:
    run_copy(str(template), destination, data=answers, defaults=True, quiet=True, vcs_ref=vcs_ref)
    git(destination, "init", "-q")
    git(destination, "config", "user.email", "team@example.com")
    git(destination, "config", "user.name", "Team")
    commit_all(destination, "Render the service")
    return destination


def update(service: Path, **answers: object) -> None:
    run_update(
        service,
        data=answers,
        defaults=True,
        overwrite=True,
        quiet=True,
        skip_answered=True,
    )


def revision_files(service: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in service.rglob("versions/*.py")}


def model_files(service: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in service.glob("src/models/*.py")}


def revision_ids(service: Path) -> list[str]:
    revisions = "".join(path.read_text() for path in service.rglob("versions/*.py"))
    return REVISION_ID.findall(revisions)


def bookings_revision(service: Path) -> str:
    (revision,) = service.rglob("versions/*add_bookings.py")
    return revision.read_text()


def add_bookings_with_revision(service: Path, alembic: Alembic) -> None:
    add_bookings_model(service)
    alembic.batch("upgrade head", "revision --autogenerate -m Add_bookings")


def test_update_applies_template_changes_and_keeps_user_work(
    template_repository: Path, tmp_path: Path, database_url: URL
) -> None:
    service = render_committed_service(template_repository, tmp_path / "service")
    alembic = Alembic(service, database_url)
    # The team's own work: a model with its revision, an edited policy line,
    # a new setting, and a local .env.
    add_bookings_with_revision(service, alembic)
    policy = service / "src" / "migration_policy.py"
    replace_once(
        policy,
        'LOCK_KEY = "alembic:my-service"',
        'LOCK_KEY = "alembic:bookings-service"',
    )
    replace_once(
        service / "src" / "config.py",
        "    db_connect_timeout: int",
        '    sentry_dsn: str = ""\n    db_connect_timeout: int',
    )
    (service / ".env").write_text("DB_PASSWORD=local-only\n")
    commit_all(service, "Our work")
    revisions_before = revision_files(service)
    # The template's fix, in lines the team did not touch.
    template = template_repository / "template"
    replace_once(
        template / "alembic.ini.jinja",
        "[alembic]\n",
        "[alembic]\n# Template 0.2.0 was here.\n",
    )
    replace_once(
        template / "{{migrations_path}}" / "env.py.jinja",
        "target_metadata = Base.metadata\n",
        "target_metadata = Base.metadata  # template 0.2.0\n",
    )
    release(template_repository, "v0.2.0")

    update(service)

    assert "# Template 0.2.0 was here." in (service / "alembic.ini").read_text()
    env_py = service / "src" / "migrations" / "env.py"
    assert "target_metadata = Base.metadata  # template 0.2.0" in env_py.read_text()
    assert 'LOCK_KEY = "alembic:bookings-service"' in policy.read_text()
    assert 'sentry_dsn: str = ""' in (service / "src" / "config.py").read_text()
    assert (service / "src" / "models" / "bookings.py").exists()
    assert revision_files(service) == revisions_before
    assert (service / ".env").read_text() == "DB_PASSWORD=local-only\n"
    assert "_commit: v0.2.0" in (service / ".copier-answers.yml").read_text()
    # Rendered with the lint: every revision stays linted.
    assert "[tool.lint-migrations]" not in (service / "pyproject.toml").read_text()
    assert not CONFLICT_MARKER.search(git(service, "diff", "HEAD"))
    check = alembic.batch("upgrade head", "check")[1]
    assert "No new upgrade operations detected" in check


def test_the_readme_render_command_gives_a_service_that_updates(
    template_repository: Path, tmp_path: Path
) -> None:
    """A newcomer's path, literally: clone, the README's render command (with --defaults),
    commit the service; a template release later, `uvx copier update` inside the service."""
    clone = tmp_path / "alembic-service-template"
    git(tmp_path, "clone", "-q", str(template_repository), str(clone))
    render = readme_render_command((clone / "README.md").read_text()) + " --defaults"

    rendered = subprocess.run(
        render, shell=True, cwd=clone, capture_output=True, text=True, timeout=300
    )

    assert rendered.returncode == 0, rendered.stderr
    service = tmp_path / "my-service"
    answers = service / ".copier-answers.yml"
    assert f"_src_path: {clone}\n" in answers.read_text()
    # The repository, started as Copier's message after copy says, by a teammate
    # whose git knows their name.
    (start_repository,) = re.findall(r"^  (git init .*)$", rendered.stderr, re.MULTILINE)
    team = identity("Team", "team@example.com")
    subprocess.run(
        start_repository, shell=True, cwd=service, env={**os.environ, **team}, check=True
    )
    assert git(service, "status", "--porcelain") == ""
    source_check = [sys.executable, "-m", "scripts", "template-source"]
    assert subprocess.run(source_check, cwd=service, timeout=60).returncode == 0
    git(clone, "config", "user.email", "template@example.com")
    git(clone, "config", "user.name", "Template")
    replace_once(clone / "template" / ".gitignore", "\n.env\n", "\n.env\n# Template 0.2.0\n")
    release(clone, "v0.2.0")

    updated = subprocess.run(
        "uvx copier update --defaults",
        shell=True,
        cwd=service,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert updated.returncode == 0, updated.stderr
    assert "# Template 0.2.0" in (service / ".gitignore").read_text()
    assert "_commit: v0.2.0" in answers.read_text()

    # A service rendered with `copier copy . ../my-service` (the README before v0.9.0):
    # `make update` stops before Copier, says what to write, and changes nothing.
    commit_all(service, "Update from the template")
    replace_once(answers, f"_src_path: {clone}\n", "_src_path: .\n")
    refused = subprocess.run(source_check, cwd=service, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "records the template as _src_path: ., a path relative to" in refused.stderr
    assert f"from this folder it names {service}, not the template" in refused.stderr
    assert "absolute path of your clone" in refused.stderr
    assert git(service, "status", "--porcelain") == " M .copier-answers.yml\n"


def test_the_lowest_declared_copier_renders_and_updates_keeping_the_history(
    template_repository: Path, tmp_path: Path
) -> None:
    """copier.yml's _min_copier_version is true: that release renders the service, and
    its update brings a template fix while the team's revisions stay theirs."""
    lowest = yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text())["_min_copier_version"]
    copier = ["uvx", "--from", f"copier=={lowest}", "copier"]
    service = tmp_path / "service"
    copy = [*copier, "copy", "--defaults", str(template_repository), str(service)]
    subprocess.run(copy, check=True, capture_output=True, timeout=300)
    git(service, "init", "-q")
    git(service, "config", "user.email", "team@example.com")
    git(service, "config", "user.name", "Team")
    (revision,) = (service / "src" / "migrations" / "versions").glob("*make_email_unique.py")
    replace_once(revision, '"""Make email unique', '"""Make email unique (ours)')
    commit_all(service, "Render the service, edit a revision")
    template = template_repository / "template"
    replace_once(template / ".gitignore", "\n.env\n", "\n.env\n# Template 0.2.0\n")
    (shipped,) = template.glob("*/versions/*make_email_unique.py*")
    shipped.write_text(shipped.read_text() + "# Template 0.2.0\n")
    release(template_repository, "v0.2.0")

    updated = subprocess.run(
        [*copier, "update", "--defaults"], cwd=service, capture_output=True, text=True, timeout=300
    )

    assert updated.returncode == 0, updated.stderr
    assert "# Template 0.2.0" in (service / ".gitignore").read_text()
    assert revision.read_text().startswith('"""Make email unique (ours)')
    assert "# Template 0.2.0" not in revision.read_text()


def test_colliding_edits_leave_markers_that_pre_commit_refuses(
    template_repository: Path, tmp_path: Path
) -> None:
    service = render_committed_service(template_repository, tmp_path / "service")
    policy = service / "src" / "migration_policy.py"
    replace_once(policy, 'LOCK_KEY = "alembic:my-service"', 'LOCK_KEY = "alembic:ours"')
    commit_all(service, "Our lock key")
    replace_once(
        template_repository / "template" / "{{code_dir}}" / "migration_policy.py.jinja",
        'LOCK_KEY = "alembic:{{ project_name }}"',
        'LOCK_KEY = "alembic-migrations:{{ project_name }}"',
    )
    release(template_repository, "v0.2.0")

    update(service)

    text = policy.read_text()
    assert re.search(
        r"<<<<<<< .*\n.*alembic:ours.*\n=======\n.*alembic-migrations:my-service.*\n>>>>>>> ",
        text,
    ), text
    hooks = yaml.safe_load((service / ".pre-commit-config.yaml").read_text())
    (conflict_hook,) = [
        hook
        for repository in hooks["repos"]
        for hook in repository["hooks"]
        if hook["id"] == "conflict-markers"
    ]
    # The hook's command, with the service's tools taken from this environment.
    command = conflict_hook["entry"].removeprefix("uv run ").split()
    bin_dir = Path(sys.executable).parent
    caught = subprocess.run(
        [str(bin_dir / command[0]), *command[1:], str(policy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert caught.returncode != 0
    assert "Merge conflict string" in caught.stdout


def test_driver_change_switches_dependency_and_url(
    template_repository: Path, tmp_path: Path, database_url: URL
) -> None:
    service = render_committed_service(template_repository, tmp_path / "service")

    update(service, db_driver="psycopg")

    pyproject = (service / "pyproject.toml").read_text()
    assert '"psycopg[binary]' in pyproject and "asyncpg" not in pyproject
    config = (service / "src" / "config.py").read_text()
    assert 'DRIVERNAME = "postgresql+psycopg"' in config
    alembic = Alembic(service, database_url)
    check = alembic.batch("upgrade head", "check")[1]
    assert "No new upgrade operations detected" in check


def test_formatter_ci_and_web_layer_changes_switch_their_files(
    template_repository: Path, tmp_path: Path, postgres_server_url: URL
) -> None:
    service = render_committed_service(template_repository, tmp_path / "service")
    assert (service / ".github" / "workflows" / "ci.yml").exists()
    assert not (service / "src" / "main.py").exists()

    update(service, formatter="ruff", ci="gitlab", web_framework="fastapi")

    ini = (service / "alembic.ini").read_text()
    assert "hooks = ruff, record_head\nruff.type = module" in ini and "black" not in ini
    assert "black" not in (service / "pyproject.toml").read_text()
    assert "ruff format" in (service / ".pre-commit-config.yaml").read_text()
    assert not (service / ".github").exists()
    assert "uv run alembic check" in (service / ".gitlab-ci.yml").read_text()
    # The web layer arrives whole: its dependencies, `make run`, and the app,
    # whose own tests pass on the service's models.
    assert '"fastapi' in (service / "pyproject.toml").read_text()
    assert "\nrun: " in (service / "Makefile").read_text()
    server_url = postgres_server_url.render_as_string(hide_password=False)
    env = {**os.environ, "TEST_DATABASE_URL": server_url}
    assert run_service_tests(service, env, "tests/test_api.py") == {"passed": 10}


def test_file_template_change_names_only_new_revisions(
    template_repository: Path, tmp_path: Path, database_url: URL
) -> None:
    service = render_committed_service(template_repository, tmp_path / "service")
    revisions_before = revision_files(service)
    assert len(revisions_before) == EXAMPLE_REVISIONS

    update(service, file_template="plain")
    commit_all(service, "Plain revision names from now on")
    add_bookings_with_revision(service, Alembic(service, database_url))

    revisions_after = revision_files(service)
    new_names = set(revisions_after) - set(revisions_before)
    assert {name: revisions_after[name] for name in revisions_before} == revisions_before
    assert len(new_names) == 1
    assert re.fullmatch(r"[0-9a-f]{12}_add_bookings\.py", new_names.pop())


@pytest.mark.parametrize(
    "layout_change",
    [{"code_dir": "app"}, {"migrations_dir": "alembic"}, {"migrations_in_code_dir": False}],
    ids=lambda change: next(iter(change)),
)
def test_layout_change_is_refused_with_instructions(
    layout_change: dict[str, object], template_repository: Path, tmp_path: Path
) -> None:
    service = render_committed_service(template_repository, tmp_path / "service")

    with pytest.raises(ValueError, match="copier update cannot move folders"):
        update(service, **layout_change)

    assert git(service, "status", "--porcelain") == ""


# One release of each kind (tests/rendering.py, release_kind), the oldest and the
# newest among them: the others take the same path through an update.
@pytest.mark.parametrize("release_commit", release_commits_by_kind())
def test_service_from_a_release_updates_to_head(
    release_commit: str, tmp_path: Path, database_url: URL
) -> None:
    service = render_committed_service(TEMPLATE_ROOT, tmp_path / "service", vcs_ref=release_commit)
    alembic = Alembic(service, database_url)
    add_bookings_with_revision(service, alembic)
    commit_all(service, "Our work")
    revisions_before = revision_files(service)
    models_before = model_files(service)
    # The lint came in v0.3.0, and moved into the vendored library in v0.18.0.
    had_lint = (service / "scripts" / "lint_migrations.py").exists()
    had_lint = had_lint or (service / "vendor").exists()
    had_record = (service / "src" / "migrations" / "head_revision.txt").exists()
    # The revision log came in v0.15.0, and moved into the vendored library in v0.17.0.
    had_log = (service / "src" / "revision_log.py").exists() or (service / "vendor").exists()

    run_update(service, vcs_ref="HEAD", defaults=True, overwrite=True, quiet=True)

    assert revision_files(service) == revisions_before
    assert model_files(service) == models_before
    # Revisions written before the service had the lint are left out of it.
    baseline = re.search(
        r'^linted-after = "\d{4}-\d{2}-\d{2}"$',
        (service / "pyproject.toml").read_text(),
        re.MULTILINE,
    )
    assert bool(baseline) is not had_lint
    assert not CONFLICT_MARKER.search(git(service, "diff", "HEAD"))
    # The service's own suite, where the most has changed since: on the oldest release.
    # Elsewhere, what its migration tests would show: the team's revision, and the
    # releases' before it, go down and up again to the models (in the same process).
    with_suite = release_commit == release_commits()[-1]
    down_and_up = [] if with_suite else ["downgrade base", "upgrade head", "check"]
    checks = alembic.batch("upgrade head", "check", *down_and_up)
    assert all("No new upgrade operations detected" in checks[i] for i in (1, -1))
    (team_head,) = REVISION_ID.findall(bookings_revision(service))
    released = set(revision_ids(service)) - {team_head}
    # The revision log adopts what a release before it applied, at the first run of
    # this template's code (a release with the log logged it), then logs the team's
    # revision as it runs.
    logged = [row[:2] for row in log_rows(database_url)][: len(released) + 1]
    assert {revision for revision, _ in logged[:-1]} == released
    first = "upgrade" if had_log else "adopt"
    assert logged == [*((revision, first) for revision, _ in logged[:-1]), (team_head, "upgrade")]
    # The head record names the service's own head, which only the service
    # knows: an update never writes it. Services rendered before it existed get
    # it from their first check, which asks for a commit.
    record = service / "src" / "migrations" / "head_revision.txt"
    history_check = [sys.executable, "-m", "scripts", "check-history"]
    if not had_record:
        assert not record.exists()
        first = subprocess.run(
            history_check, cwd=service, capture_output=True, text=True, timeout=120
        )
        assert first.returncode == 1 and "was missing; it is written now" in first.stderr
    assert record.read_text() == f"{team_head}\n"
    checked = subprocess.run(
        history_check, cwd=service, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr
    # The tree a fresh render has, and the team's work: no file of an older release is
    # left behind to break what the service runs.
    fresh = render_service(tmp_path / "fresh")
    team_files = {"src/models/bookings.py", ".git"}
    assert tree(service) == tree(fresh) | team_files | set(revision_paths(service))
    if with_suite:
        env = {**alembic.env, "TEST_DATABASE_URL": str(database_url.render_as_string(False))}
        counts = run_service_tests(service, env)
        assert set(counts) == {"passed"}, counts


UNTRACKED = {"__pycache__", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def tree(project: Path) -> set[str]:
    """Every file and folder under `project`, by relative path, but what is inside
    git's folder and the tools' caches."""
    paths = {path.relative_to(project) for path in project.rglob("*")}
    return {path.as_posix() for path in paths if not UNTRACKED & set(path.parts[:-1])}


def revision_paths(service: Path) -> list[str]:
    return [path.relative_to(service).as_posix() for path in service.rglob("versions/*.py")]


TEAM_ROUTE = """

@router.get("/stats/count")
async def count_hotels(session: SessionDep) -> int:
    \"\"\"The team's own route, written before the template's hardening.\"\"\"
    return len((await session.scalars(select(Hotel.id))).all())
"""


def test_web_service_from_the_last_release_gets_the_topology_and_keeps_its_edits(
    tmp_path: Path, database_url: URL
) -> None:
    # The last release before the production topology (v0.8.0).
    last_release = release_commit("v0.7.0")
    service = render_committed_service(
        TEMPLATE_ROOT, tmp_path / "service", vcs_ref=last_release, web_framework="fastapi"
    )
    hotels = service / "src" / "api" / "hotels.py"
    hotels.write_text(hotels.read_text() + TEAM_ROUTE)
    compose = service / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("image: postgres:18", "image: postgres:17"))
    commit_all(service, "Our route, our PostgreSQL")

    run_update(service, vcs_ref="HEAD", defaults=True, overwrite=True, quiet=True)

    assert not CONFLICT_MARKER.search(git(service, "diff", "HEAD"))
    assert hotels.read_text().endswith(TEAM_ROUTE)
    services = yaml.safe_load(compose.read_text())["services"]
    assert services["postgres"]["image"] == "postgres:17"
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["app"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    for new_file in ("Dockerfile", ".dockerignore"):
        assert (service / new_file).exists(), new_file
    config = (service / "src" / "config.py").read_text()
    assert "migration_database_url: SecretStr | None = None" in config
    assert "DB_POOLER=transaction" in (service / ".env.example").read_text()
    env = {
        **Alembic(service, database_url).env,
        "TEST_DATABASE_URL": str(database_url.render_as_string(False)),
    }
    counts = run_service_tests(service, env, "tests/test_api.py", "tests/test_api_fuzz.py")
    assert counts == {"passed": 11}


# A team's revision as v0.15.1 taught it: backfill from revision_operations, and the
# concurrent index block from migration_policy, as v0.15.1's own example revision does.
TEAM_BACKFILL = Revision(
    "7e7e7e7e7e7e",
    "Rate hotels",
    [
        'op.add_column("hotels", sa.Column("rating", sa.Integer()))',
        'backfill("hotels", "rating = 3", pending="rating IS NULL")',
        "with concurrent_index_block() as concurrently:\n"
        '        op.create_index("ix_hotels_rating", "hotels", ["rating"],'
        " postgresql_concurrently=concurrently)",
    ],
    [
        'op.drop_index("ix_hotels_rating", table_name="hotels")',
        'op.drop_column("hotels", "rating")',
    ],
    imports=(
        "from src.migration_policy import concurrent_index_block",
        "from src.revision_operations import backfill",
    ),
)
MOVED_TO_THE_LIBRARY = (
    "src/lock_waits.py",
    "src/revision_log.py",
    "src/squash_baselines.py",
    "scripts/schema_catalog.py",
    "scripts/scratch_databases.py",
    "scripts/seeding.py",
    "scripts/rehearsal.py",
    "scripts/lint_migrations.py",
    "scripts/revision_history.py",
)


def test_a_v0_15_1_service_gets_the_library_and_its_revisions_still_run(
    tmp_path: Path, database_url: URL
) -> None:
    service = render_committed_service(
        TEMPLATE_ROOT, tmp_path / "service", vcs_ref=release_commit("v0.15.1")
    )
    TEAM_BACKFILL.write(service, "rate_hotels")
    alembic = Alembic(service, database_url)
    alembic("upgrade", "head")
    commit_all(service, "Rate hotels")

    run_update(service, vcs_ref="HEAD", defaults=True, overwrite=True, quiet=True)

    assert not CONFLICT_MARKER.search(git(service, "diff", "HEAD"))
    assert not [path for path in MOVED_TO_THE_LIBRARY if (service / path).exists()]
    assert (service / "vendor" / "alembic-rollout" / "pyproject.toml").exists()
    # The released revision, unchanged, still downgrades and upgrades through the
    # paths it imports from; the revision log finds it as it ran.
    alembic.batch("downgrade -1", "upgrade head")
    assert alembic("current").startswith(f"{TEAM_BACKFILL.revision} (head)")
