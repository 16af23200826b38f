"""Rendering: every answer set renders completely; wrong answers are refused and write nothing."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nodes
import pytest
import yaml

from tests.rendering import (
    QUESTIONS,
    SHIPPED_HEAD,
    TEMPLATE_ROOT,
    answer_set_id,
    answer_sets,
    question_values,
    render_service,
    rendered_files,
)

ANSWER_SETS = answer_sets()


def test_answer_sets_cover_every_value_of_every_question() -> None:
    for name in QUESTIONS:
        rendered_values = {answers[name] for answers in ANSWER_SETS}
        assert set(question_values(name)) <= rendered_values, name


def test_template_readme_lists_every_question_with_its_default() -> None:
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    questions = readme.split("## Questions", 1)[1].split("\n## ", 1)[0]
    for name, spec in QUESTIONS.items():
        default = str(spec["default"]).lower() if spec["type"] == "bool" else spec["default"]
        assert f"| `{name}` | `{default}` |" in questions, name


def without_github_expressions(source: str) -> str:
    """A workflow's `${{ github... }}` is GitHub's syntax, not a Jinja leftover."""
    return re.sub(r"\$\{\{ [A-Za-z_.]+ \}\}", "", source)


@pytest.mark.parametrize("answers", ANSWER_SETS, ids=answer_set_id)
def test_render_leaves_nothing_unrendered(answers: dict[str, Any], tmp_path: Path) -> None:
    project = render_service(tmp_path / "service", **answers)

    leftovers = [
        f"{path.relative_to(project)}: {marker}"
        for path in rendered_files(project)
        for marker in ("{{", "{%", ".jinja")
        if marker in path.name or marker in without_github_expressions(path.read_text())
    ]
    assert leftovers == []

    migrations = project / (
        f"{answers['code_dir']}/{answers['migrations_dir']}"
        if answers["migrations_in_code_dir"]
        else answers["migrations_dir"]
    )
    assert (migrations / "env.py").is_file()
    assert (project / "alembic.ini").is_file()
    assert (project / answers["code_dir"] / "models" / "__init__.py").is_file()
    readme = (project / "README.md").read_text()
    heading = "## Быстрый старт" if answers["readme_language"] == "ru" else "## Quick start"
    assert heading in readme
    assert ci_steps(project, answers["ci"]) == CI_STEPS[answers["ci"]]
    check_file(json_schema_check("vendor.compose-spec", project / "docker-compose.yml"))
    if answers["web_framework"] == "fastapi":
        check_file([tool("hadolint"), str(project / "Dockerfile")])
        assert ".env\n" in (project / ".dockerignore").read_text()
    else:
        assert not (project / "Dockerfile").exists()
    assert "\nlint: check-history lint-migrations " in (project / "Makefile").read_text()
    expected_head = SHIPPED_HEAD if answers["example_models"] else "0a1b2c3d4e5f"
    assert (migrations / "head_revision.txt").read_text() == f"{expected_head}\n"
    revisions = sorted(path.name for path in (migrations / "versions").glob("*.py"))
    assert len(revisions) == (4 if answers["example_models"] else 1)
    if answers["example_models"] and answers["file_template"] == "dated":
        assert revisions[0] == "2025_01_10_0900-c3a1f9e2b7d4_create_table_hotels.py"
    elif answers["example_models"]:
        assert revisions[0] == "5e8d2a6b1f03_create_table_rooms.py"


def test_alembic_ini_holds_no_url_and_no_space_separated_paths(tmp_path: Path) -> None:
    ini = (render_service(tmp_path / "service") / "alembic.ini").read_text()

    assert "sqlalchemy.url" not in ini
    assert "prepend_sys_path = %(here)s\n" in ini
    assert "path_separator = os\n" in ini


MESSAGE_AFTER_COPY = {
    "en": ("my-service is ready. Unless the folder is inside a git repository", "готов"),
    "ru": ("Сервис my-service готов. Если папка ещё не лежит в git-репозитории", "is ready"),
}


@pytest.mark.parametrize("language", MESSAGE_AFTER_COPY)
def test_copiers_message_after_copy_speaks_the_readmes_language(
    language: str, tmp_path: Path
) -> None:
    destination = tmp_path / "my-service"
    copied = subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--defaults", "--vcs-ref", "HEAD"]
        + ["--data", f"readme_language={language}", str(TEMPLATE_ROOT), str(destination)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert copied.returncode == 0, copied.stderr
    shown, foreign = MESSAGE_AFTER_COPY[language]
    assert shown in copied.stderr and foreign not in copied.stderr
    # The commands, one per line: the repository first, then the quick start's.
    message = copied.stderr.split(shown, 1)[1]
    commands = re.findall(r"^  (\S[^#\n]*?)\s*(?:#.*)?$", message, re.MULTILINE)
    start_repository = 'git init -b main && git add -A && git commit -qm "Render my-service"'
    quick_start = ["uv sync", "make db", "make migrate", "make test"]
    assert commands == [f"cd {destination}", start_repository, *quick_start]


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("question", "answer", "explanation"),
    [
        ("migrations_dir", "class", "must not be a Python keyword"),
        ("migrations_dir", "my-pkg", "must be a lowercase Python identifier"),
        ("migrations_dir", "../x", "no path separators"),
        ("migrations_dir", "", "must be a lowercase Python identifier"),
        ("migrations_dir", "Migrations", "must be a lowercase Python identifier"),
        ("migrations_dir", "models", "must not clash"),
        ("migrations_dir", "api", "must not clash"),
        ("project_name", "My Service", "must start with a lowercase letter"),
        ("project_name", "", "must start with a lowercase letter"),
        ("line_length", 40, "between 79 and 120"),
        ("line_length", 500, "between 79 and 120"),
        ("code_dir", "lib", "lib"),
        ("db_driver", "psycopg2", "psycopg2"),
    ],
)
def test_wrong_answer_is_refused_and_nothing_is_written(
    question: str, answer: object, explanation: str, tmp_path: Path
) -> None:
    destination = tmp_path / "service"

    with pytest.raises(ValueError, match=explanation):
        render_service(destination, **{question: answer})

    assert not destination.exists()


def test_every_name_in_the_service_tree_is_refused_as_migrations_dir() -> None:
    """The folders and modules at the service's root and in its package, whatever the
    answers (a service may add the web layer later), against copier.yml's list."""
    validator = QUESTIONS["migrations_dir"]["validator"]
    (refused,) = re.findall(
        r"migrations_dir in \[([^\]]*)\] %\}\s*migrations_dir must not clash", validator
    )
    template = TEMPLATE_ROOT / "template"
    names = {"src", "app"}  # the code_dir choices
    for path in [*template.iterdir(), *(template / "{{code_dir}}").iterdir()]:
        name = re.sub(r"\{%.*?%\}", "", path.name).removesuffix(".jinja").removesuffix(".py")
        if name.isidentifier() and name.islower() and not name.startswith("_"):
            names.add(name)

    assert "api" in names and "migration_policy" in names and "vendor" in names
    assert names <= set(re.findall(r"'(\w+)'", refused))


def fetch(branch: str) -> str:
    return f'git fetch --quiet --depth=1 origin "+refs/heads/{branch}:refs/remotes/origin/{branch}"'


# What CI runs, in order: migrations, drift, `make lint` (the migration lint
# among them), the tests, and the report against the default branch (GitLab fetches
# it first; GitHub's checkout has every branch): the rehearsal, the default branch's
# tests on the branch's schema, and the check that the branch leaves the default branch's
# revisions as they are.
CI_STEPS = {
    "github": [
        None,
        None,
        "uv sync",
        "uv run alembic upgrade head",
        "uv run alembic check",
        "make lint",
        "uv run pytest",
        'make report base="origin/$DEFAULT_BRANCH"',
    ],
    "gitlab": [
        "uv sync",
        "uv run alembic upgrade head",
        "uv run alembic check",
        "make lint",
        "uv run pytest",
        fetch("$CI_DEFAULT_BRANCH"),
        'make report base="origin/$CI_DEFAULT_BRANCH"',
    ],
    "none": [],
}


def ci_steps(project: Path, ci: str) -> list[str | None]:
    """The rendered pipeline's commands, once its file passed the tools made to check it."""
    workflow = project / ".github" / "workflows" / "ci.yml"
    gitlab_ci = project / ".gitlab-ci.yml"
    assert workflow.exists() == (ci == "github")
    assert gitlab_ci.exists() == (ci == "gitlab")
    if ci == "github":
        # actionlint also refuses actions on a runtime GitHub has removed (node20);
        # zizmor, actions not pinned by SHA, tokens kept on disk, broad permissions.
        check_file([tool("actionlint"), str(workflow)])
        check_file([tool("zizmor"), "--offline", str(workflow)])
        dependabot = project / ".github" / "dependabot.yml"
        check_file(json_schema_check("vendor.dependabot", dependabot))
        assert yaml.safe_load(dependabot.read_text())["updates"][0]["package-ecosystem"] == (
            "github-actions"
        )
        check_file(json_schema_check("vendor.github-workflows", workflow))
        jobs = yaml.safe_load(workflow.read_text())["jobs"]
        assert_drift_runs_on_schedule(jobs["drift"], "${{ secrets.DRIFT_DATABASE_URL }}")
        assert [step.get("run") for step in jobs["drift"]["steps"]][2:4] == [
            "uv sync",
            "make drift",
        ]
        return [step.get("run") for step in jobs["test"]["steps"]]
    if ci == "gitlab":
        check_file(json_schema_check("vendor.gitlab-ci", gitlab_ci))
        pipeline = yaml.safe_load(gitlab_ci.read_text())
        assert_drift_runs_on_schedule(pipeline["drift"], "$DRIFT_DATABASE_URL")
        assert pipeline["drift"]["script"] == ["uv sync", "make drift"]
        script: list[str | None] = pipeline["test"]["script"]
        return script
    return []


def assert_drift_runs_on_schedule(job: dict[str, Any], database_url: str) -> None:
    """`make drift` on schedules only, against the secret's database, never the test
    job's: its settings come from that one variable."""
    condition = job["if"] if "if" in job else job["rules"][0]["if"]
    assert "schedule" in condition
    settings = job["env"] if "env" in job else job["variables"]
    assert settings == {"DATABASE_URL": database_url}


def tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def json_schema_check(schema: str, path: Path) -> list[str]:
    return [tool("check-jsonschema"), "--builtin-schema", schema, str(path)]


def check_file(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def readmes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fastapi service per README language."""
    root = tmp_path_factory.mktemp("readmes")
    return {
        language: render_service(root / language, web_framework="fastapi", readme_language=language)
        for language in ("en", "ru")
    }


def readme_facts(readme: str) -> dict[str, Any]:
    """What must not exist in one language only: code, commands, links, sections."""
    blocks = re.findall(r"```.*?```", readme, flags=re.S)
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)
    return {
        # Comments in code blocks are translated; the code is not.
        "code blocks": sorted(re.sub(r"\s+#.*", "", block) for block in blocks),
        "code spans": sorted(set(re.findall(r"`([^`\n]+)`", prose))),
        "links": sorted(re.findall(r"\]\(([^)]+)\)", readme)),
        "sections": len(re.findall(r"^#+ ", readme, re.M)),
    }


def test_both_readmes_hold_the_same_facts(readmes: dict[str, Path]) -> None:
    english, russian = (readme_facts((readmes[lang] / "README.md").read_text()) for lang in readmes)
    for fact in english:
        assert english[fact] == russian[fact], fact


# What includes/readme/GLOSSARY.md rules out in the Russian README's prose: a second
# word for a thing that has one (head, deploy, release, the stairway test, the index
# build, the lock mode), an undeclined English noun, and the calques.
NOT_IN_THE_GLOSSARY = (
    r"\bcheckout\b",
    r"\bголов",
    r"\bдо head(?!-)",
    r"деплой",
    r"выкладк",
    r"выкат",
    r"\bвыпуск",
    r"лестниц",
    r"сборк\w* индекс",
    r"эксклюзивн",
    r"исключительн\w* блокировк",
    r"\bУпасть\b",
    r"\bговорит\b",
    r"^## Устройство$",
)


def test_the_russian_readme_keeps_to_its_glossary(readmes: dict[str, Path]) -> None:
    readme = (readmes["ru"] / "README.md").read_text()
    prose = re.sub(r"`[^`\n]+`", "", re.sub(r"```.*?```", "", readme, flags=re.S))
    found = {
        pattern: re.findall(rf".{{0,30}}{pattern}.{{0,30}}", prose, re.M)
        for pattern in NOT_IN_THE_GLOSSARY
    }
    assert {pattern: lines for pattern, lines in found.items() if lines} == {}


def macro_names(template: Path) -> list[str]:
    tree = jinja2.Environment().parse(template.read_text())
    return [macro.name for macro in tree.find_all(jinja2.nodes.Macro)]


def test_both_readme_languages_have_every_block_the_structure_places() -> None:
    """template/README.md.jinja holds the sections and their conditions once; each
    language gives the same blocks of text, in the same order, and none is unused."""
    structure = (TEMPLATE_ROOT / "template" / "README.md.jinja").read_text()
    placed = re.findall(r"\{\{ text\.(\w+)\(\) \}\}", structure)
    texts = TEMPLATE_ROOT / "includes" / "readme"
    assert sorted(path.name for path in texts.glob("*.jinja")) == ["en.jinja", "ru.jinja"]
    assert macro_names(texts / "en.jinja") == placed
    assert macro_names(texts / "ru.jinja") == placed


@pytest.mark.parametrize("language", ["en", "ru"])
def test_readme_commands_can_be_typed_and_references_resolve(
    readmes: dict[str, Path], language: str
) -> None:
    project = readmes[language]
    readme = (project / "README.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", readme, re.M))

    for bare in ("`alembic stamp ", "`alembic revision --autogenerate"):
        assert bare not in readme
    assert "`git init`" in readme and "pre-commit install" in readme
    assert re.search(r"-X POST localhost:8000/hotels .*\"location\"", readme.replace("\\\n", ""))
    helped = subprocess.run(["make", "help"], cwd=project, capture_output=True, text=True)
    assert helped.returncode == 0 and "$(" not in helped.stdout and "update" in helped.stdout
    references = re.findall(r'\(README, "([^"]+)"\)', (project / ".env.example").read_text())
    assert references and set(references) <= headings, references
    if language == "ru":
        warning = "Применяйте сжатие только там, где все базы стоят на `<rev>` или новее"
        assert warning in " ".join(readme.split())


# What a team owns and reads, as the move of the machinery into the library set it: the
# Python outside tests/, the versions folder and the vendored library, in non-blank lines.
TEAM_OWNED_LINES, ENV_PY_LINES = 1_300, 60
PRIVATE_ALEMBIC_NAMES = ("_migrations_fn", "_all_down_revisions", "_revision_map")


def test_the_team_owns_little_python_a_thin_env_py_and_knows_whose_folder_is_whose(
    readmes: dict[str, Path],
) -> None:
    project = readmes["en"]
    not_owned = {"tests", "versions", "vendor"}
    owned = {
        path.relative_to(project).as_posix(): path.read_text()
        for path in project.rglob("*.py")
        if not not_owned & set(path.relative_to(project).parts)
    }
    lines = {
        path: sum(1 for line in text.splitlines() if line.strip()) for path, text in owned.items()
    }

    assert sum(lines.values()) <= TEAM_OWNED_LINES, sorted(lines.items(), key=lambda kv: -kv[1])
    assert lines["src/migrations/env.py"] <= ENV_PY_LINES
    using_private = [
        path for path, text in owned.items() if any(n in text for n in PRIVATE_ALEMBIC_NAMES)
    ]
    assert using_private == []
    for language, said in (
        ("en", "it changes only through `copier update`"),
        ("ru", "меняется только через `copier update`"),
    ):
        readme = (readmes[language] / "README.md").read_text()
        assert "vendor/alembic-rollout/" in readme.split("\n## ", 1)[0] and said in readme
