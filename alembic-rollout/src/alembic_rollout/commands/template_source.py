"""`make update` starts here: can Copier find the template from this folder?

`copier update` reads the template from `_src_path` in .copier-answers.yml,
resolved from the service's folder. A relative path was relative to where the
service was rendered (`copier copy . ../my-service` records `.`), so from here
it names the wrong folder and Copier fails with "Unknown revision". This says
what to write instead, and changes nothing.
"""

import re
import sys
from pathlib import Path

from alembic_rollout.service import project_root

ANSWERS_FILE = ".copier-answers.yml"
# The remote forms Copier accepts: any URL scheme, scp-like git@host:, gh: and gl:.
REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:|gh:|gl:)")


def recorded_source(answers: str) -> str | None:
    for line in answers.splitlines():
        if line.startswith("_src_path:"):
            return line.removeprefix("_src_path:").strip().strip("'\"")
    return None


def source_problem(source: str | None) -> str | None:
    """Why Copier cannot update from `source`, or None when it can."""
    if source is None:
        return f"{ANSWERS_FILE} has no _src_path: it was not written by Copier."
    if REMOTE.match(source):
        return None
    path = Path(source).expanduser()
    if not path.is_absolute():
        return (
            f"{ANSWERS_FILE} records the template as _src_path: {source}, a path "
            "relative to where the service was rendered; from this folder it names "
            f"{(project_root() / path).resolve()}, not the template."
        )
    if not (path / "copier.yml").exists():
        return (
            f"{ANSWERS_FILE} records the template as _src_path: {source}, and "
            "there is no template there (no copier.yml)."
        )
    return None


def main() -> int:
    answers_file = project_root() / ANSWERS_FILE
    answers = answers_file.read_text() if answers_file.exists() else ""
    problem = source_problem(recorded_source(answers))
    if problem is None:
        return 0
    print(
        f"{problem}\n"
        f"Set _src_path in {ANSWERS_FILE} to the template's git URL, or to the "
        "absolute path of your clone of it, for example:\n"
        "  _src_path: https://github.com/your-org/alembic-service-template.git\n"
        "  _src_path: /home/you/src/alembic-service-template\n"
        "then commit, and run `make update` again. Nothing was changed.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
