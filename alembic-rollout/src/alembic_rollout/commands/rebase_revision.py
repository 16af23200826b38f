"""`make rebase-revision` (`alembic-rollout rebase-revision`): in a git
merge or rebase that conflicts on head_revision.txt, your revisions move on
top of theirs.

Every `alembic revision` and `alembic merge` rewrites head_revision.txt
(commands/record_head.py), so two branches that each add a revision change
that one line differently, and git stops the merge or rebase that would
leave two heads. The design of django-linear-migrations, for Alembic.
"""

import ast
import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from alembic_rollout.commands.lint_migrations import lint
from alembic_rollout.connect_failures import describe_connect_failure
from alembic_rollout.revision_history import (
    HistoryError,
    ancestry,
    head_record,
    parents,
    record_head,
    refuse_uncommitted,
    run_command,
    script_directory,
    shown,
)
from alembic_rollout.service import (
    create_direct_engine,
    get_settings,
    project_root,
    settings_error,
)


def conflict_sides(text: str) -> tuple[list[str], list[str]]:
    """The two sides of the first conflict in the record: (ours, theirs).

    "ours" is HEAD: in a `git merge`, the branch you are on; in a
    `git rebase`, the branch you rebase onto.
    """
    ours: list[str] = []
    theirs: list[str] = []
    side: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("<<<<<<<"):
            side = ours
        elif line.startswith("|||||||"):
            side = None  # diff3's common ancestor
        elif line.startswith("=======") and side is not theirs:
            side = theirs
        elif line.startswith(">>>>>>>"):
            return ours, theirs
        elif side is not None and line.strip():
            side.append(line.strip())
    raise HistoryError("no merge conflict in the head record")


def git_path(name: str) -> Path:
    """A path inside the repository's git directory (worktrees included)."""
    result = subprocess.run(
        ["git", "rev-parse", "--git-path", name],
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=True,
    )
    return project_root() / result.stdout.strip()


def in_git_rebase() -> bool:
    rebase_states = ("rebase-merge", "rebase-apply")
    return any(git_path(state).exists() for state in rebase_states)


@dataclass
class Move:
    """Re-parent `bottom`, the first of `yours`, onto `onto`."""

    yours: list[Script]
    bottom: Script
    fork_point: str
    onto: str


def plan_move(scripts: ScriptDirectory, yours: str, theirs: str) -> Move:
    for revision in (yours, theirs):
        if scripts.get_revision(revision) is None:
            missing = f"revision {revision} is not in the versions folder"
            raise HistoryError(missing)
    moved = ancestry(scripts, [yours]) - ancestry(scripts, [theirs])
    if not moved:
        raise HistoryError(f"{yours} is below {theirs}: nothing to move")
    bottoms = []
    for revision in moved:
        below = parents(scripts, revision)
        if not below or any(parent not in moved for parent in below):
            bottoms.append(revision)
    if len(bottoms) != 1 or len(parents(scripts, bottoms[0])) != 1:
        raise HistoryError(
            "your revisions do not start from one revision of the common "
            "history; join the heads with `uv run alembic merge heads` instead"
        )
    bottom = scripts.get_revision(bottoms[0])
    assert bottom is not None
    oldest_first = reversed(list(scripts.walk_revisions()))
    ordered = [script for script in oldest_first if script.revision in moved]
    return Move(ordered, bottom, parents(scripts, bottom.revision)[0], theirs)


def applied_revisions(scripts: ScriptDirectory) -> tuple[set[str], str] | None:
    """What the local database (the configured one) has applied, and where
    it is; None when the service has no database configured."""
    try:
        settings = get_settings()
        settings.require_connection()
    except settings_error():
        return None
    try:
        engine = create_direct_engine(settings)
    except settings_error() as error:  # a pooler without a direct connection
        raise HistoryError(str(error)) from None

    def read_heads(connection: Connection) -> tuple[str, ...]:
        return MigrationContext.configure(connection).get_current_heads()

    async def current_heads() -> tuple[str, ...]:
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read_heads)
        except (OSError, DBAPIError) as error:
            raise HistoryError(
                "cannot tell whether your revisions are applied locally, so "
                f"nothing was changed: {describe_connect_failure(engine, error)}"
            ) from None
        finally:
            await engine.dispose()

    heads = asyncio.run(current_heads())
    known = [head for head in heads if scripts.get_revision(head) is not None]
    return ancestry(scripts, known), ", ".join(heads) or "base"


def set_down_revision(path: Path, down_revision: str) -> None:
    """Point `down_revision` and the docstring's `Revises:` line elsewhere.

    Edits exactly those two spans of the source, found in its syntax tree.
    """
    source = path.read_bytes()
    tree = ast.parse(source)
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))

    def span(node: ast.expr) -> tuple[int, int]:
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = line_starts[node.lineno - 1] + node.col_offset
        return start, line_starts[node.end_lineno - 1] + node.end_col_offset

    edits: list[tuple[int, int, bytes]] = []
    for statement in tree.body:
        targets: list[ast.expr]
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        elif isinstance(statement, ast.Assign):
            targets = statement.targets
        else:
            continue
        names = [name.id for name in targets if isinstance(name, ast.Name)]
        if "down_revision" in names and statement.value is not None:
            start, end = span(statement.value)
            edits.append((start, end, f'"{down_revision}"'.encode()))
    if len(edits) != 1:
        raise HistoryError(f"{shown(path)}: no single `down_revision = ...`")
    first = tree.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        start, end = span(first.value)
        revises = source.find(b"\nRevises:", start, end)
        if revises != -1:
            line_end = source.index(b"\n", revises + 1)
            revises_line = f"Revises: {down_revision}".encode()
            edits.append((revises + 1, line_end, revises_line))
    for start, end, replacement in sorted(edits, reverse=True):
        source = source[:start] + replacement + source[end:]
    path.write_bytes(source)


def rebase() -> list[str]:
    """Move your revisions on top of theirs; return what to tell the user."""
    scripts = script_directory()
    record = head_record(scripts)
    if not record.exists() or "<<<<<<<" not in record.read_text():
        heads = scripts.get_heads()
        if len(heads) <= 1:
            head = ", ".join(heads) or "base"
            return [f"Nothing to rebase: one head ({head})."]
        raise HistoryError(
            f"{len(heads)} heads but no conflict in {shown(record)}; run this "
            "while git reports the conflict (git merge or git rebase)"
        )
    # The merge or rebase stages what it brings; only your own edits that
    # git does not hold yet would be lost.
    refuse_uncommitted(scripts, staged_too=False)
    ours, theirs = conflict_sides(record.read_text())
    if in_git_rebase():
        ours, theirs = theirs, ours  # the commits being replayed are yours
    if len(ours) != 1 or len(theirs) != 1:
        raise HistoryError(f"{shown(record)}: not one revision per side")
    move = plan_move(scripts, ours[0], theirs[0])
    moved_ids = [script.revision for script in move.yours]
    applied = applied_revisions(scripts)
    notes = []
    if applied is None:
        notes.append("No local database configured: nothing applied to check.")
    else:
        revisions, database_at = applied
        if revisions.intersection(moved_ids):
            raise HistoryError(
                f"the local database is at {database_at}, so it has applied "
                f"revisions that would move ({', '.join(moved_ids)}); nothing "
                "was changed. Downgrade first: "
                f"`uv run alembic downgrade {move.fork_point}`, then run "
                "`make rebase-revision` again"
            )
    set_down_revision(Path(move.bottom.path), move.onto)
    heads = record_head(script_directory())
    changed = [record, *(Path(script.path) for script in move.yours)]
    staging = ["git", "add", "--", *map(str, changed)]
    subprocess.run(staging, cwd=project_root(), check=True)
    notes.append(
        f"Moved {', '.join(moved_ids)} on top of {move.onto}; the head is "
        f"{', '.join(heads)}. Staged: {', '.join(shown(path) for path in changed)}."
    )
    report = lint([Path(script.path) for script in move.yours])
    notes.append(str(report))
    if report.findings:
        raise HistoryError("\n".join(notes))
    continuing = "git rebase --continue" if in_git_rebase() else "git commit"
    notes.append(f"Then check: `make migrate check`; finish: `{continuing}`.")
    return notes


if __name__ == "__main__":
    run_command("make rebase-revision", rebase)
