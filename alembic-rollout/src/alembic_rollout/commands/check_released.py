"""`make check-released [base=REF]` (`alembic-rollout check-released`):
fail if this checkout edits or deletes a revision that REF (default: the
upstream main branch, else the latest tag) already has.

A released revision has run on databases that this checkout will not run
it on again: an edit reaches only the databases that have not run it yet,
and `alembic upgrade` refuses the others (alembic_rollout.revision_log).
What counts is what a revision does, by the revision log's checksum:
reformatting and comments are no edit. A revision that a squash replaced
(its baseline's `squashes`) may go.
"""

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from alembic.script.revision import RevisionError

from alembic_rollout.revision_history import (
    HistoryError,
    add_base_argument,
    command_parser,
    default_base,
    exists_at,
    git,
    in_repository,
    require_commit,
    run_command,
    script_directory,
    service_prefix,
)
from alembic_rollout.revision_log import (
    checksum,
    revision_checksum,
    squashed_checksum,
)
from alembic_rollout.service import project_root
from alembic_rollout.squash_baselines import squashed_revisions

REVISION_ID = re.compile(r"^revision(?:: str)? = [\"'](\w+)", re.MULTILINE)
Released = tuple[str, str, str]


def released_revisions(base: str, versions: Path) -> Iterator[Released]:
    """(revision, path, source) of each revision file at `base`; the path
    as the service names it, the file read from the repository's root."""
    require_commit(base)
    folder = in_repository(versions)
    if not exists_at(base, folder):
        raise HistoryError(
            f"{base} has no {folder}: the service has no revisions there "
            "(added later, or moved since?); compare with a ref that has them"
        )
    listed = git(
        "ls-tree",
        "-r",
        "--name-only",
        "--full-tree",
        base,
        "--",
        folder,
    )
    paths = [p for p in listed.stdout.splitlines() if p.endswith(".py")]
    prefix = service_prefix()
    for path, source in zip(paths, file_contents(base, paths), strict=True):
        found = REVISION_ID.search(source)
        if found:
            yield found[1], path.removeprefix(prefix), source


def file_contents(base: str, paths: list[str]) -> list[str]:
    """The files at `base`, read by one `git cat-file --batch`."""
    requests = "".join(f"{base}:{path}\n" for path in paths)
    output = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=project_root(),
        input=requests.encode(),
        capture_output=True,
        check=True,
    ).stdout
    contents, position = [], 0
    for _ in paths:
        # Each file: "<object> blob <size>\n", its bytes, "\n".
        header_end = output.index(b"\n", position)
        size = int(output[position:header_end].split()[2])
        start = header_end + 1
        contents.append(output[start : start + size].decode())
        position = start + size + 1
    return contents


def deleted_from_the_middle(
    base: str,
    released: list[Released],
    versions: Path,
) -> str:
    """Which of `base`'s revisions no file in `versions` has any longer."""
    here: set[str] = set()
    for path in versions.glob("*.py"):
        found = REVISION_ID.finditer(path.read_text())
        here.update(match[1] for match in found)
    gone = []
    for revision, released_path, _ in released:
        if revision not in here:
            gone.append(f"  {revision} ({released_path}): deleted")
    listed = "\n".join(gone)
    return (
        f"this checkout deletes revisions that {base} already has, so the "
        f"history no longer loads:\n{listed}\nPut them back as they are on "
        f"{base} (`git checkout {base} -- <file>`)."
    )


def check_released(base: str | None) -> list[str]:
    scripts = script_directory()
    base = base or default_base()
    versions = Path(scripts.versions)
    released = list(released_revisions(base, versions))
    try:
        here = {script.revision: script for script in scripts.walk_revisions()}
    except (KeyError, RevisionError):
        # A revision deleted from the middle: the rest no longer load.
        gone = deleted_from_the_middle(base, released, versions)
        raise HistoryError(gone) from None
    squashed = squashed_revisions(scripts)
    changed = []
    for revision, path, source in released:
        script = here.get(revision)
        if script is None:
            if revision not in squashed:
                changed.append(f"  {revision} ({path}): deleted")
        elif checksum(source) not in (
            revision_checksum(script),
            squashed_checksum(script),  # The squash point, now a baseline.
        ):
            changed.append(f"  {revision} ({path}): edited")
    if changed:
        listed = "\n".join(changed)
        raise HistoryError(
            f"this checkout changes revisions that {base} already has, and "
            f"that databases may have run:\n{listed}\nPut them back as "
            f"they are on {base} (`git checkout {base} -- <file>`) and "
            "write the change as a new revision. Only `make squash` may "
            "replace released revisions."
        )
    count = len(released)
    return [f"check-released: the {count} revisions of {base} are unchanged."]


def main() -> None:
    parser = command_parser("check-released", __doc__)
    add_base_argument(parser, "that was released")
    arguments = parser.parse_args()
    run_command(
        "make check-released",
        lambda: check_released(arguments.base),
    )


if __name__ == "__main__":
    main()
