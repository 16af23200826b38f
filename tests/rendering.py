"""Rendering the template from the working tree, and the answer sets to render."""

import atexit
import functools
import itertools
import json
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from copier import run_copy

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent
# The head revision of the example history that services are rendered with.
SHIPPED_HEAD = "e07a3d5c8b19"
QUESTIONS = {
    name: spec
    for name, spec in yaml.safe_load((TEMPLATE_ROOT / "copier.yml").read_text()).items()
    if not name.startswith("_") and spec.get("when") is not False
}
# Questions whose every pair of values is rendered together (the layout's paths and the
# driver's URL meet in alembic.ini and env.py); the rest are spread over those renders.
CROSSED = ("code_dir", "migrations_in_code_dir", "db_driver")
# Questions that matter only together, spread as one: every value of each group is
# rendered (the defaults first), as the line lengths are only with a formatter, and
# the web layer's routes differ with and without the example models.
SPREAD_TOGETHER: dict[tuple[str, ...], list[tuple[Any, ...]]] = {
    ("formatter", "line_length"): [("black", 88), ("ruff", 79), ("ruff", 120), ("none", 88)],
    ("web_framework", "example_models"): [
        ("none", True),
        ("fastapi", True),
        ("fastapi", False),
        ("none", False),
    ],
}
# Free-text questions have no choices to read: the values people use most.
FREE_TEXT_VALUES: dict[str, list[Any]] = {
    "project_name": ["my-service", "hotel-booking"],
    "migrations_dir": ["migrations", "alembic", "migration"],
    "line_length": [88, 79, 120],
}


def question_values(name: str) -> list[Any]:
    spec = QUESTIONS[name]
    if "choices" in spec:
        choices = spec["choices"]
        return list(choices.values() if isinstance(choices, dict) else choices)
    if spec["type"] == "bool":
        return [True, False]
    return FREE_TEXT_VALUES[name]


def answer_sets() -> list[dict[str, Any]]:
    """Every pair of values of two CROSSED questions, every value of every other
    question at least once, and every value of a SPREAD_TOGETHER group.

    The first set is all defaults; the other questions' values are spread over the
    rest by a seeded shuffle, so no two questions move in lockstep and the sets stay
    the same from run to run.
    """
    spread = random.Random(20250110)
    grouped = [name for group in SPREAD_TOGETHER for name in group]
    others = [name for name in QUESTIONS if name not in (*CROSSED, *grouped)]
    spread_values = {
        **{(name,): [(value,) for value in question_values(name)] for name in others},
        **SPREAD_TOGETHER,
    }
    sets = []
    for combination in all_pairs([question_values(name) for name in CROSSED]):
        answers = dict(zip(CROSSED, combination, strict=True))
        for name in [*others, *grouped]:
            answers[name] = QUESTIONS[name]["default"]
        sets.append(answers)
    for names, values in spread_values.items():
        assert values[0] == tuple(QUESTIONS[name]["default"] for name in names), names
        rest = [*values[1:], *spread.choices(values, k=len(sets) - len(values))]
        spread.shuffle(rest)
        for answers, chosen in zip(sets[1:], rest, strict=True):
            answers.update(zip(names, chosen, strict=True))
    return sets


def all_pairs(columns: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Combinations, one value from each column, in which every two values of two
    columns meet at least once: greedily, each the first combination that covers the
    most pairs not yet covered, so the first is every column's first value."""
    combinations = list(itertools.product(*columns))

    def pairs(combination: tuple[Any, ...]) -> set[tuple[int, Any, int, Any]]:
        return {
            (left, combination[left], right, combination[right])
            for left, right in itertools.combinations(range(len(combination)), 2)
        }

    uncovered = set().union(*map(pairs, combinations))
    chosen = []
    while uncovered:
        best = max(combinations, key=lambda combination: len(pairs(combination) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def answer_set_id(answers: dict[str, Any]) -> str:
    formatter = answers["formatter"]
    if formatter != "none":
        formatter += str(answers["line_length"])
    return "-".join(
        [
            answers["code_dir"],
            answers["migrations_dir"]
            + ("-inside" if answers["migrations_in_code_dir"] else "-at-root"),
            answers["db_driver"],
            answers["file_template"],
            formatter,
            "examples" if answers["example_models"] else "no-examples",
            *(["fastapi"] if answers["web_framework"] == "fastapi" else []),
        ]
    )


# What Copier reads from the template repository: the questions, the service, and the
# service README's text that template/README.md.jinja imports.
TEMPLATE_FILES = ("copier.yml", "README.md", "includes", "template")


def copy_template(destination: Path) -> Path:
    """The template as a plain folder, without git."""
    destination.mkdir(parents=True)
    for name in TEMPLATE_FILES:
        source = TEMPLATE_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name)
        else:
            shutil.copy(source, destination / name)
    return destination


def render_service(destination: Path, **answers: Any) -> Path:
    """The working tree (uncommitted changes included) rendered with these answers.

    Rendered once per answer set in a test process, then copied: Copier clones the
    template for every render, and a test changes its copy freely.
    """
    rendered = _rendered(json.dumps(answers, sort_keys=True))
    shutil.copytree(rendered, destination, symlinks=True, dirs_exist_ok=True)
    return destination


@functools.cache
def _rendered(answers: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="template-render-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    run_copy(
        str(TEMPLATE_ROOT),
        folder / "service",
        data=json.loads(answers),
        defaults=True,
        vcs_ref="HEAD",
        quiet=True,
    )
    return folder / "service"


def lock_dependencies(project: Path) -> None:
    """The uv.lock that a team commits, resolved once per pyproject.toml in a test
    process: uv asks the package index again at every resolution (seconds each),
    and `make check-compat` installs the base from its lock as a team's would."""
    manifests = sorted(project.glob("vendor/*/pyproject.toml"))
    key = "\n".join(path.read_text() for path in [project / "pyproject.toml", *manifests])
    if key not in _LOCKS:
        # From uv's cache when it holds every package's index page, as it does once a
        # test has resolved any service; else from the index.
        offline = subprocess.run(
            ["uv", "lock", "--quiet", "--offline"], cwd=project, capture_output=True, timeout=180
        )
        if offline.returncode != 0:
            subprocess.run(["uv", "lock", "--quiet"], cwd=project, check=True, timeout=180)
        _LOCKS[key] = (project / "uv.lock").read_bytes()
    (project / "uv.lock").write_bytes(_LOCKS[key])


_LOCKS: dict[str, bytes] = {}


def rendered_files(project: Path) -> Iterator[Path]:
    for path in sorted(project.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


# Clean for the migration lint whatever the release's Base offers, as a
# team's model is once the service lints its revisions.
BOOKINGS_MODEL = """\
from datetime import date

from sqlalchemy import BigInteger, Identity, Text
from sqlalchemy.orm import Mapped, mapped_column

from {code_dir}.models.base import Base


class Booking(Base):
    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    guest_name: Mapped[str] = mapped_column(Text)
    date_from: Mapped[date]
    date_to: Mapped[date]
"""


def add_bookings_model(project: Path, code_dir: str = "src") -> None:
    """A new model module, which autogenerate must find without any edit to env.py."""
    (project / code_dir / "models" / "bookings.py").write_text(
        BOOKINGS_MODEL.format(code_dir=code_dir)
    )


def release_commit(version: str) -> str:
    changelog = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    found = re.search(
        rf"^## {re.escape(version)} \([^)]*commit ([0-9a-f]{{7,40}})\)", changelog, re.M
    )
    assert found, f"CHANGELOG.md names no commit for {version}"
    return found[1]


def release_commits() -> list[str]:
    """Every release in CHANGELOG.md, by commit, so a clone without tags works."""
    changelog = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    commits = re.findall(r"^## v\S+ \([^)]*commit ([0-9a-f]{7,40})\)", changelog, re.M)
    assert commits, "CHANGELOG.md names no release commit"
    return commits


def release_kind(commit: str) -> tuple[object, ...]:
    """What an update from `commit` has to merge into: the features its services have
    (the migration lint, the head record, the revision log, the web layer, the vendored
    library). Releases of one kind take the same path through an update."""
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", commit, "template"],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return (
        # The migration lint: in scripts/ from v0.3.0, in the vendored library from v0.17.0.
        any("lint_migrations" in path or "/vendor/" in path for path in listed),
        any(path.endswith("head_revision.txt.jinja") for path in listed),
        # The revision log: in the package from v0.15.0, in the vendored library from v0.17.0.
        any(path.endswith("revision_log.py") or "/vendor/" in path for path in listed),
        any("main.py" in path for path in listed),
        any("/vendor/" in path for path in listed),
    )


def release_commits_by_kind() -> list[str]:
    """The oldest release of each kind, and the newest release: what the every-release
    update test needs to cover, in a fraction of the renders."""
    commits = release_commits()  # newest first
    chosen: dict[tuple[object, ...], str] = {}
    for commit in reversed(commits):
        chosen.setdefault(release_kind(commit), commit)
    return [commits[0], *(commit for commit in chosen.values() if commit != commits[0])]
