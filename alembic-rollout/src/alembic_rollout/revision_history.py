"""What the history commands share: the project's Alembic setup, the head
record, the revision graph, and the history at another git ref.

Imports nothing from the service's package, and no command: the record-head
post-write hook (commands/record_head.py) imports it, and also runs inside
`make squash`'s temporary copy of the project, which has no package.
"""

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import to_tuple
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from alembic_rollout.service import ServiceError, project_root

HEAD_RECORD = "head_revision.txt"


class HistoryError(Exception):
    """Refused or failed; nothing was changed unless the message says so."""


# A database that could not be reached: a refused port, a TLS certificate
# not trusted, a server gone.
UNREACHABLE = (OSError, OperationalError, InterfaceError)


def unreachable(error: BaseException) -> str:
    """One line for an UNREACHABLE error, without a traceback."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    return "PostgreSQL: " + " ".join(str(cause).split())[:300]


def command_parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    """`alembic-rollout COMMAND`'s parser, described by the first paragraph
    of the command module's docstring."""
    return argparse.ArgumentParser(
        prog=f"alembic-rollout {command}",
        description=(doc or "").split("\n\n")[0],
    )


def add_base_argument(parser: argparse.ArgumentParser, meaning: str) -> None:
    """`--base REF`, where the default base is what default_base() finds."""
    parser.add_argument("--base", help=f"git ref {meaning} (default: origin/main, else last tag)")


def run_command(command: str, work: Callable[[], Iterable[str]]) -> None:
    """A history command's end: the lines `work` reports, or its HistoryError
    in one line on stderr and exit status 1; so is a database it could not
    reach (a refused port, a TLS certificate not trusted)."""
    try:
        lines = list(work())
    except (HistoryError, ServiceError) as error:
        sys.exit(f"{command}: {error}")
    except UNREACHABLE as error:
        sys.exit(f"{command}: {unreachable(error)}")
    if lines:
        print("\n".join(lines))


def alembic_config() -> Config:
    return Config(project_root() / "alembic.ini")


def script_directory(config: Config | None = None) -> ScriptDirectory:
    return ScriptDirectory.from_config(config or alembic_config())


def head_record(scripts: ScriptDirectory) -> Path:
    return Path(scripts.dir) / HEAD_RECORD


def shown(path: Path) -> str:
    return str(path.relative_to(project_root()))


def record_head(scripts: ScriptDirectory) -> list[str]:
    heads = sorted(scripts.get_heads())
    head_record(scripts).write_text("".join(f"{head}\n" for head in heads))
    return heads


def check_head_record(scripts: ScriptDirectory) -> str:
    """One head, and the record names it; else a one-line HistoryError.

    A missing record (a service that predates it) is written, and the check
    still fails, so that the new file gets committed.
    """
    record = head_record(scripts)
    heads = sorted(scripts.get_heads())
    if record.exists() and "<<<<<<<" in record.read_text():
        raise HistoryError(
            f"{shown(record)} has a merge conflict: two branches added "
            "revisions; run `make rebase-revision` to put yours on top"
        )
    if len(heads) > 1:
        raise HistoryError(
            f"{len(heads)} head revisions ({', '.join(heads)}): two branches "
            "added revisions; move yours on top of theirs (`make "
            "rebase-revision` during the merge, or edit down_revision)"
        )
    if not record.exists():
        record_head(scripts)
        raise HistoryError(
            f"{shown(record)} was missing; it is written now, for the head "
            f"{', '.join(heads) or 'base'}: commit it with your next change"
        )
    recorded = record.read_text().split()
    if recorded != heads:
        raise HistoryError(
            f"{shown(record)} says {', '.join(recorded) or 'nothing'}, but the "
            f"head revision is {', '.join(heads) or 'base'}: a revision was "
            "added, removed or edited without `alembic revision`; fix it, or "
            "run `uv run alembic-rollout record-head`"
        )
    return f"Migration history: one head, {heads[0] if heads else 'base'}"


def parents(scripts: ScriptDirectory, revision: str) -> tuple[str, ...]:
    script = scripts.get_revision(revision)
    assert script is not None
    return to_tuple(script.down_revision, default=())


def builds_on(scripts: ScriptDirectory, revision: str) -> tuple[str, ...]:
    """Its down revisions and the revisions its `depends_on` names."""
    script = scripts.get_revision(revision)
    assert script is not None
    needed = []
    for dependency in to_tuple(script.dependencies, default=()):
        resolved = scripts.get_revision(dependency)
        assert resolved is not None
        needed.append(resolved.revision)
    return (*parents(scripts, revision), *needed)


def ancestry(scripts: ScriptDirectory, heads: Iterable[str]) -> set[str]:
    """The revisions and every revision below them (depends_on included)."""
    seen: set[str] = set()
    pending = list(heads)
    while pending:
        revision = pending.pop()
        if revision not in seen:
            seen.add(revision)
            pending.extend(builds_on(scripts, revision))
    return seen


def new_revisions(
    scripts: ScriptDirectory,
    base_heads: list[str],
) -> list[Script]:
    """The revisions that the base does not have, oldest first."""
    have = ancestry(scripts, base_heads)
    oldest_first = reversed(list(scripts.walk_revisions()))
    return [script for script in oldest_first if script.revision not in have]


def git(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *arguments],
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=False,
    )


def default_base() -> str:
    """What a branch is compared with: the upstream main branch, else the
    latest tag."""
    service_prefix()  # Outside a git repository, say so first.
    remote_head = git("symbolic-ref", "--short", "refs/remotes/origin/HEAD")
    candidates = [remote_head.stdout.strip(), "origin/main", "origin/master"]
    for ref in filter(None, candidates):
        if git("rev-parse", "--verify", "--quiet", ref).returncode == 0:
            return ref
    tag = git("describe", "--tags", "--abbrev=0")
    if tag.returncode == 0:
        return tag.stdout.strip()
    raise HistoryError(
        "no upstream main branch (origin/main) and no tag to compare with: "
        "name the branch, tag or commit to compare with: base=main, say"
    )


def in_git_repository() -> bool:
    return git("rev-parse", "--show-prefix").returncode == 0


@cache
def service_prefix() -> str:
    """Where the service lives in its git repository: "" at the root,
    "services/hotels/" in a monorepo."""
    shown_prefix = git("rev-parse", "--show-prefix")
    if shown_prefix.returncode:
        raise HistoryError(
            f"{project_root()} is not in a git repository: the history at "
            "another ref needs one (git init, and a first commit)"
        )
    return shown_prefix.stdout.strip()


def in_repository(path: Path) -> str:
    """`path`, in this checkout, as git names it at any ref: from the
    repository's root, which `REF:path` and `git ls-tree` read from."""
    return service_prefix() + path.relative_to(project_root()).as_posix()


def require_commit(ref: str) -> None:
    service_prefix()  # Outside a git repository, say so first.
    if git("rev-parse", "--verify", "--quiet", ref + "^{commit}").returncode:
        raise HistoryError(f"{ref} is not a git commit, branch or tag here")


def exists_at(ref: str, path: str) -> bool:
    return git("cat-file", "-e", f"{ref}:{path}").returncode == 0


def refuse_uncommitted(scripts: ScriptDirectory, staged_too: bool) -> None:
    """Refuse to rewrite revisions that git could not give back: files of
    Alembic's scripts folder untracked or changed in the work tree, and with
    `staged_too`, changed in the index. A merge conflict in the head record
    is what `make rebase-revision` resolves, never a reason to refuse."""
    folder = Path(scripts.dir).relative_to(project_root()).as_posix()
    status = git(
        "status",
        "--porcelain",
        "--untracked-files=all",
        "--",
        folder,
    )
    record = in_repository(head_record(scripts))
    uncommitted = []
    for line in status.stdout.splitlines():
        in_index, in_work_tree, path = line[0], line[1], line[3:]
        if path == record and "U" in (in_index, in_work_tree):
            continue
        if in_work_tree != " " or (staged_too and in_index != " "):
            uncommitted.append(path.removeprefix(service_prefix()))
    if uncommitted:
        listed = "\n  ".join(uncommitted)
        # During a merge or rebase, `git stash` refuses; `git add` works.
        advice = "`git add` them"
        if staged_too:
            advice = "Commit them, or `git stash -u`"
        raise HistoryError(
            f"these files in {folder} are not committed, and this command "
            "rewrites or deletes revision files: git could not give back "
            f"what it never held. Nothing was changed. {advice}, first:\n"
            f"  {listed}"
        )


def heads_at(ref: str, scripts: ScriptDirectory) -> list[str]:
    """The head revisions that `ref` records, each found in this checkout."""
    require_commit(ref)
    record = in_repository(head_record(scripts))
    shown_record = git("show", f"{ref}:{record}")
    if shown_record.returncode:
        why = why_missing(ref, scripts)
        raise HistoryError(f"{ref} has no {record}: {why}")
    heads = shown_record.stdout.split()
    for head in heads:
        if scripts.get_revision(head) is None:
            raise HistoryError(
                f"{ref}'s head revision {head} is not in this checkout's "
                "history (squashed or removed?); compare with a later ref"
            )
    return heads


def why_missing(ref: str, scripts: ScriptDirectory) -> str:
    """What `ref` has instead of a head record, as git shows it."""
    versions = in_repository(Path(scripts.versions))
    if exists_at(ref, versions):
        return (
            f"it has the revisions in {versions}, but not the record of "
            f"their head, which `alembic revision` writes in services "
            "rendered from the template's v0.6.0 on; compare with a later "
            "ref that has it"
        )
    service = service_prefix().rstrip("/") or "the repository's root"
    return (
        f"it has no {versions} either, so the service in {service} has no "
        "revisions there (added later, or moved since?); compare with a "
        "ref that has them"
    )
