"""Rendering: every answer set renders completely; wrong answers are refused and write nothing."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rendering import answer_set_id, answer_sets, render_service, rendered_files

ANSWER_SETS = answer_sets()


def test_answer_sets_cover_every_value_of_every_question() -> None:
    from tests.rendering import QUESTIONS, question_values

    for name in QUESTIONS:
        rendered_values = {answers[name] for answers in ANSWER_SETS}
        assert set(question_values(name)) <= rendered_values, name


@pytest.mark.parametrize("answers", ANSWER_SETS, ids=answer_set_id)
def test_render_leaves_nothing_unrendered(answers: dict[str, Any], tmp_path: Path) -> None:
    project = render_service(tmp_path / "service", **answers)

    leftovers = [
        f"{path.relative_to(project)}: {marker}"
        for path in rendered_files(project)
        for marker in ("{{", "{%", ".jinja")
        if marker in path.name or marker in path.read_text()
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
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    steps = [step.get("run") for step in workflow["jobs"]["test"]["steps"]]
    for command in (
        "uv run alembic upgrade head",
        "uv run alembic check",
        "make lint",
        "uv run pytest",
    ):
        assert command in steps
    assert "\nlint: lint-migrations " in (project / "Makefile").read_text()
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
